package circulate_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
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

// TestCopiesMoveAfterWrite: with a dwell of an hour, the copies of a
// client still move at once after each write: to the next hop, on relays
// that held none.
func TestCopiesMoveAfterWrite(t *testing.T) {
	g := newGroup(t, 3, newSealer(t), func(c *circulate.Config) { c.Dwell = time.Hour })
	s := newShopper("alice")
	for i := range 3 {
		s.addUntil(t, g, i)
		// Each write is at hop h, and moves the copies to hop h+1.
		g.eventually(10*time.Second, func() error {
			hops := map[[2]uint64]int{}
			for _, m := range g.live() {
				for _, c := range m.store.Copies() {
					hops[c]++
				}
			}
			want := [2]uint64{uint64(i + 1), uint64(i + 1)} // generation, hop
			if len(hops) != 1 || hops[want] != 2 {
				return fmt.Errorf("after write %d: copies (generation, hop) %v, want two of %v", i+1, hops, want)
			}
			return nil
		})
	}
}

// TestCirculatingWarns: a group with no more relays than copies does not
// circulate: Circulating says so, and the relays log a warning at once; a
// relay more, and they circulate again.
func TestCirculatingWarns(t *testing.T) {
	var logs syncBuffer
	g := newGroup(t, 2, newSealer(t), func(c *circulate.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	for _, m := range g.live() {
		if err := m.store.Circulating(); err == nil || !strings.Contains(err.Error(), "copies do not move: 2 live relays for 2 copies") {
			t.Fatalf("%s, with 2 relays for 2 copies: %v", m.name, err)
		}
	}
	g.eventually(10*time.Second, func() error {
		if !strings.Contains(logs.String(), "level=WARN msg=\"client SCONEs are not circulating") {
			return fmt.Errorf("no warning logged:\n%s", logs.String())
		}
		return nil
	})
	g.start(2)
	g.waitMembers(3)
	for _, m := range g.live() {
		if err := m.store.Circulating(); err != nil {
			t.Fatalf("%s, with 3 relays for 2 copies: %v", m.name, err)
		}
	}
	g.eventually(10*time.Second, func() error {
		if !strings.Contains(logs.String(), "msg=\"client SCONEs circulate\"") {
			return fmt.Errorf("no notice that copies circulate again:\n%s", logs.String())
		}
		return nil
	})
}

// TestLeaveHandsEveryCopyOver: a relay that leaves right after a write
// hands every copy it holds to the others, and the client's state is
// intact on them.
func TestLeaveHandsEveryCopyOver(t *testing.T) {
	g := newGroup(t, 3, newSealer(t), func(c *circulate.Config) { c.Dwell = time.Hour })
	s := newShopper("alice")
	s.addUntil(t, g, 0)
	leaver := -1
	g.eventually(10*time.Second, func() error {
		for i, m := range g.live() {
			if len(m.store.Copies()) > 0 {
				leaver = i
				return nil
			}
		}
		return errors.New("no relay holds a copy")
	})
	g.mu.Lock()
	m := g.relays[leaver]
	g.relays[leaver] = nil
	g.mu.Unlock()
	m.srv.Stop()
	if err := m.store.Leave(time.Second); err != nil {
		t.Fatalf("%s leaving: %v", m.name, err)
	}
	wantCopies(g, 1, 2)
	s.addUntil(t, g, 0) // checks the cart kept the first add
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
