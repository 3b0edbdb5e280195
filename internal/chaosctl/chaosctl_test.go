//go:build sconechaos

package chaosctl

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

func TestChaosControl(t *testing.T) {
	var none *Control
	if mc, err := none.Memberlist("127.0.0.1:0"); mc != nil || err != nil {
		t.Fatalf("without chaos: memberlist config %v, %v; want the default", mc, err)
	}
	c := &Control{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h := c.handler()
	put := func(target string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, target, nil))
		return rec.Code
	}
	if code := put("/skew?d=-5s"); code != http.StatusOK || time.Duration(c.skew.Load()) != -5*time.Second {
		t.Fatalf("PUT /skew?d=-5s: %d, skew %v", code, time.Duration(c.skew.Load()))
	}
	if code := put("/gossip-block?addrs=127.0.0.1:1"); code != http.StatusConflict {
		t.Fatalf("PUT /gossip-block in a process without gossip: %d, want %d", code, http.StatusConflict)
	}
	mc, err := c.Memberlist("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer mc.Transport.Shutdown()
	bt := c.gossip.Load()
	if mc.Transport != bt {
		t.Fatal("the memberlist config is not on the blocking transport")
	}
	for _, tc := range []struct {
		target string
		code   int
		want   []string
	}{
		{"/gossip-block?addrs=127.0.0.1:2,127.0.0.1:1", http.StatusOK, []string{"127.0.0.1:1", "127.0.0.1:2"}},
		{"/gossip-block?addrs=no-port", http.StatusBadRequest, []string{"127.0.0.1:1", "127.0.0.1:2"}},
		{"/gossip-block?addrs=", http.StatusOK, nil},
	} {
		if code := put(tc.target); code != tc.code || !slices.Equal(bt.Blocked(), tc.want) {
			t.Errorf("PUT %s: %d, blocked %v; want %d, %v", tc.target, code, bt.Blocked(), tc.code, tc.want)
		}
	}
}
