package memnet

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

func TestIsolateAndHeal(t *testing.T) {
	n := New()
	a, b := n.Transport("a"), n.Transport("b")
	lis := n.Listen("b", "svc-b")
	defer lis.Close()
	send := func() bool {
		a.WriteToAddress([]byte("ping"), memberlist.Address{Addr: n.AddrOf("b")})
		select {
		case p := <-b.PacketCh():
			return string(p.Buf) == "ping"
		case <-time.After(50 * time.Millisecond):
			return false
		}
	}
	dial := func(from string) error {
		c, err := n.Dialer(from)(context.Background(), "svc-b")
		if err == nil {
			c.Close()
		}
		return err
	}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if !send() || dial("a") != nil {
		t.Fatal("a cannot reach b before any cut")
	}
	n.Isolate("a")
	if send() || dial("a") == nil {
		t.Fatal("a reaches b while cut off")
	}
	if dial("client") != nil {
		t.Fatal("a client cannot reach b: cuts are between members only")
	}
	n.Heal("a")
	if !send() || dial("a") != nil {
		t.Fatal("a cannot reach b after healing")
	}
}
