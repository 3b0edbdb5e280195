//go:build !sconechaos

package chaosctl

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// TestOffIgnoresEnv: without the sconechaos tag, Env set to a free address
// starts nothing: no listener there, the real clock, the default gossip.
func TestOffIgnoresEnv(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	t.Setenv(Env, addr)
	c, err := Start(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if c != nil || err != nil {
		t.Fatalf("Start with %s=%s: %v, %v; want nil, nil", Env, addr, c, err)
	}
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Fatalf("something serves on %s", addr)
	}
	if d := time.Since(c.Now()()); d < 0 || d > time.Second {
		t.Fatalf("the clock is %v off time.Now", d)
	}
	if mc, err := c.Memberlist("127.0.0.1:0"); mc != nil || err != nil {
		t.Fatalf("memberlist config %v, %v; want the default", mc, err)
	}
}
