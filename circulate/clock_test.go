package circulate_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/circulate"
	"github.com/scone-project/scone/internal/hook"
)

// aheadClock is time.Now plus an offset the test sets.
type aheadClock struct{ off atomic.Int64 }

func (c *aheadClock) now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

func (c *aheadClock) set(d time.Duration) { c.off.Store(int64(d)) }

// TestClockSkew: a relay whose clock runs ahead of the servers' past the
// expiry of a client's SCONEs, by less than Config.MaxClockSkew, reads,
// writes and passes on the client's live copies as the others do, while
// they move among the relays; ahead by more, it treats them as expired, as
// a relay with no tolerance does once its clock passes their expiry.
func TestClockSkew(t *testing.T) {
	const (
		life   = 30 * time.Second // the SCONEs' lifetime, by the servers' clock
		within = 45 * time.Second // past their expiry, within the tolerance
		beyond = 2 * time.Minute  // past their expiry plus the tolerance
	)
	sealer := newSealer(t, scone.WithTTL(life))
	ahead := &aheadClock{}
	ahead.set(within)
	g := newGroup(t, 3, sealer, func(c *circulate.Config) {
		if c.Name == "relay-0" {
			c.Now = ahead.now
		}
	})
	ctx := context.Background()
	read := func(m *member) [][]byte {
		t.Helper()
		got, err := m.store.Get(ctx, "zed", "/svc/Do")
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		return got
	}
	read(g.relays[1])
	last := next(t, sealer, nil, "v0")
	if err := g.relays[1].store.Apply(ctx, "zed", &hook.Reply{SCONEs: [][]byte{last}}, nil); err != nil {
		t.Fatal(err)
	}
	for round := range 6 {
		// Every relay reads the last write, the fast one included.
		for _, m := range g.live() {
			if got := read(m); len(got) != 1 || string(got[0]) != string(last) {
				t.Fatalf("round %d, ahead by %v: %s reads %d SCONEs, not the last write", round, within, m.name, len(got))
			}
		}
		// The write goes through each relay in turn.
		m := g.relays[round%3]
		sent := read(m)
		last = next(t, sealer, sent[0], fmt.Sprint("v", round+1))
		if err := m.store.Apply(ctx, "zed", &hook.Reply{SCONEs: [][]byte{last}}, sent); err != nil {
			t.Fatalf("round %d, ahead by %v: a write through %s: %v", round, within, m.name, err)
		}
		// The copies move on before the next round.
		hop := maxHop(g)
		g.eventually(10*time.Second, func() error {
			if h := maxHop(g); h <= hop {
				return fmt.Errorf("the copies are still at hop %d", h)
			}
			return nil
		})
	}

	ahead.set(beyond)
	if got := read(g.relays[0]); len(got) != 0 {
		t.Fatalf("ahead by %v: relay-0 reads %d SCONEs, want none (expired by its clock)", beyond, len(got))
	}
}

// maxHop returns the highest hop of the copies the live relays hold.
func maxHop(g *group) uint64 {
	var h uint64
	for _, m := range g.live() {
		for _, c := range m.store.Copies() {
			h = max(h, c[1])
		}
	}
	return h
}
