package circulate_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/circulate"
)

// wantCopies waits until every client the group holds has exactly want
// copies, and the group holds n clients.
func wantCopies(g *group, n, want int) {
	g.t.Helper()
	g.eventually(10*time.Second, func() error {
		c := g.copies()
		if len(c) != n {
			return fmt.Errorf("%d clients held, want %d", len(c), n)
		}
		for key, k := range c {
			if k != want {
				return fmt.Errorf("client %s…: %d copies, want %d", key[:8], k, want)
			}
		}
		return nil
	})
}

func TestRequestsSpreadOverRelays(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("relays=%d", n), func(t *testing.T) {
			g := newGroup(t, n, newSealer(t), nil)
			shoppers := []*shopper{newShopper("alice"), newShopper("bob"), newShopper("carol")}
			for i := range 3 * n {
				for j, s := range shoppers {
					s.addUntil(t, g, i+j) // relay (i+j) mod n, or the next ones
				}
				if i%n == 0 {
					time.Sleep(150 * time.Millisecond) // a hand-off or more
				}
			}
			wantCopies(g, len(shoppers), 2)
			moved := 0.0
			for _, m := range g.live() {
				moved += counter(t, m.store, "scone_circulate_handoffs_total", "outcome", "ok")
			}
			if moved == 0 {
				t.Fatal("no copy was ever handed on")
			}
		})
	}
}

func TestKillOneRelay(t *testing.T) {
	for victim := range 4 {
		t.Run(fmt.Sprintf("victim=%d", victim), func(t *testing.T) {
			g := newGroup(t, 4, newSealer(t), nil)
			shoppers := []*shopper{newShopper("alice"), newShopper("bob"), newShopper("carol"), newShopper("dave")}
			for i := range 4 {
				for j, s := range shoppers {
					s.addUntil(t, g, i+j)
				}
			}
			g.kill(victim)
			for i := range 6 {
				for j, s := range shoppers {
					s.addUntil(t, g, i+j)
				}
			}
			wantCopies(g, len(shoppers), 2)
		})
	}
}

func TestCopiesConfigurable(t *testing.T) {
	g := newGroup(t, 4, newSealer(t), func(c *circulate.Config) { c.Copies = 3 })
	s := newShopper("alice")
	for i := range 6 {
		s.addUntil(t, g, i)
	}
	wantCopies(g, 1, 3)
	g.kill(1)
	s.addUntil(t, g, 0)
	wantCopies(g, 1, 3)
}

// TestExpiryEverywhere: every copy is dropped at the expiry of its
// client's last SCONE (with no clock skew tolerated, so at once).
func TestExpiryEverywhere(t *testing.T) {
	g := newGroup(t, 3, newSealer(t, scone.WithTTL(time.Second)), func(c *circulate.Config) { c.MaxClockSkew = 0 })
	for i, id := range []string{"alice", "bob"} {
		s := newShopper(id)
		for range 3 {
			s.addUntil(t, g, i) // each add checks the state of the ones before
		}
	}
	g.eventually(10*time.Second, func() error {
		if c := g.copies(); len(c) != 0 {
			return fmt.Errorf("copies of %d clients remain after their expiry", len(c))
		}
		return nil
	})
	expired := 0.0
	for _, m := range g.live() {
		expired += counter(t, m.store, "scone_circulate_expired_total", "", "")
	}
	if expired < 2 {
		t.Fatalf("scone_circulate_expired_total sums to %v, want at least 2 (a copy of each client)", expired)
	}
}
