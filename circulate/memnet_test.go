package circulate_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/circulate"
	"github.com/scone-project/scone/cluster"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/internal/memnet"
)

// memGroup is a group of circulating stores on an in-memory network,
// driven through the Store API: fast, and with partitions.
type memGroup struct {
	t      testing.TB
	net    *memnet.Net
	stores []*circulate.Store
}

func newMemGroup(t testing.TB, n int, tune func(*circulate.Config)) *memGroup {
	t.Helper()
	g := &memGroup{t: t, net: memnet.New()}
	for i := range n {
		name := fmt.Sprintf("relay-%d", i)
		cfg := circulate.DefaultConfig()
		cfg.Name, cfg.PeerAddr = name, "peer-"+name
		cfg.Memberlist = cluster.LANConfig()
		cfg.Memberlist.Transport = g.net.Transport(name)
		cfg.Dial = g.net.Dialer(name)
		cfg.Dwell = 100 * time.Millisecond
		if *debug {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		for _, s := range g.stores {
			cfg.Seeds = append(cfg.Seeds, g.net.AddrOf(s.Name()))
		}
		if tune != nil {
			tune(&cfg)
		}
		st, err := circulate.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		go st.ServePeer(g.net.Listen(name, cfg.PeerAddr))
		t.Cleanup(func() { st.Close() })
		g.stores = append(g.stores, st)
	}
	g.waitMembers(g.stores, n)
	return g
}

// waitMembers waits until every store of stores sees want members.
func (g *memGroup) waitMembers(stores []*circulate.Store, want int) {
	g.t.Helper()
	eventually(g.t, 20*time.Second, func() error {
		for _, s := range stores {
			if got := len(s.Members()); got != want {
				return fmt.Errorf("%s sees %d members, want %d", s.Name(), got, want)
			}
		}
		return nil
	})
}

// step reads client's SCONE through s and writes its successor, holding
// data; it returns the error of either.
func step(t testing.TB, s *circulate.Store, sealer *scone.Sealer, client, data string) error {
	ctx := context.Background()
	sent, err := s.Get(ctx, client, "/svc/Do")
	if err != nil {
		return err
	}
	var prev []byte
	if len(sent) > 0 {
		prev = sent[0]
	}
	return s.Apply(ctx, client, &hook.Reply{SCONEs: [][]byte{next(t, sealer, prev, data)}}, sent)
}

// read returns the data of client's SCONE as read through s.
func read(t testing.TB, s *circulate.Store, sealer *scone.Sealer, client string) (string, error) {
	toks, err := s.Get(context.Background(), client, "/svc/Do")
	if err != nil || len(toks) == 0 {
		return "", err
	}
	st, err := sealer.Restore(context.Background(), toks[0], scone.Expect{Service: "svc"}, "/svc/")
	if err != nil {
		t.Fatal(err)
	}
	return string(st.Data()), nil
}

// TestPartitionHeals cuts a relay off until both sides have declared each
// other dead, writes on the majority side meanwhile, heals the network, and
// checks that the group is whole again and the cut-off relay reads the
// newest state.
func TestPartitionHeals(t *testing.T) {
	sealer := newSealer(t)
	g := newMemGroup(t, 4, func(c *circulate.Config) {
		c.RejoinInterval = 200 * time.Millisecond
		c.Memberlist.GossipToTheDeadTime = time.Nanosecond // only a rejoin heals it
	})
	// Each write moves the copies on, and the next one may meet that
	// hand-off under way: the relay of the next hop that took the copy
	// first, as primary, may find a holder that has not taken it yet, or
	// whose copy is busy (it took nothing: the write fails Unavailable,
	// nothing changed), and a put slow to answer on a loaded machine
	// leaves a write in doubt. A client retries each, reading again
	// first, as stepUntil does; the read at the end checks that the last
	// write, acknowledged, is the state. A conflict is no such answer: it
	// says another write came first, and with one client calling once at
	// a time, it would be a stale read. (Under load it once was such a
	// holder's refusal, misreported as a conflict; the scenario
	// testdata/update-during-handoff.txt holds it.)
	stepUntil := func(s *circulate.Store, data string) {
		t.Helper()
		eventually(t, 10*time.Second, func() error {
			err := step(t, s, sealer, "zed", data)
			if c := scone.CodeOf(err); err != nil && c != scone.CodeUnavailable && c != scone.CodeInDoubt {
				t.Fatalf("write %s through %s: %v", data, s.Name(), err)
			}
			return err
		})
	}
	for i := range 3 {
		stepUntil(g.stores[i%4], fmt.Sprint("v", i))
	}
	g.net.Isolate("relay-3")
	g.waitMembers(g.stores[3:], 1)
	g.waitMembers(g.stores[:3], 3)
	for i := 3; i < 6; i++ { // the majority side goes on
		stepUntil(g.stores[i%3], fmt.Sprint("v", i))
	}
	g.net.Heal("relay-3")
	g.waitMembers(g.stores, 4)
	eventually(t, 10*time.Second, func() error {
		if got, err := read(t, g.stores[3], sealer, "zed"); err != nil || got != "v5" {
			return fmt.Errorf("the healed relay reads %q, %v; want v5", got, err)
		}
		return nil
	})
}

// TestQueryBound: when the relays holding a client's copies do not answer
// (cut off, not yet declared dead), a request fails with Unavailable, and is
// never served with an empty state.
func TestQueryBound(t *testing.T) {
	sealer := newSealer(t)
	g := newMemGroup(t, 3, func(c *circulate.Config) {
		c.QueryTimeout = 300 * time.Millisecond
		c.Dwell = time.Hour                       // the copies stay put
		c.Memberlist.ProbeInterval = time.Hour    // and nobody is declared dead
		c.Memberlist.GossipInterval = time.Hour   //
		c.Memberlist.PushPullInterval = time.Hour //
	})
	if err := step(t, g.stores[0], sealer, "zed", "v1"); err != nil {
		t.Fatal(err)
	}
	key := cluster.KeyOf("zed")
	// The write hands the copies on to relays that held none: until that
	// hand-off ends, the relay it left may still hold its copy too. Wait
	// for the two copies to settle before cutting their holders off.
	eventually(t, 10*time.Second, func() error {
		held := 0
		for _, s := range g.stores {
			if _, ok := s.Copies()[key]; ok {
				held++
			}
		}
		if held != 2 {
			return fmt.Errorf("%d relays hold a copy of zed's SCONEs, want 2", held)
		}
		return nil
	})
	var asker *circulate.Store
	for _, s := range g.stores {
		if _, ok := s.Copies()[key]; ok {
			g.net.Isolate(s.Name())
		} else {
			asker = s
		}
	}
	if asker == nil {
		t.Fatal("every relay holds a copy")
	}
	toks, err := asker.Get(context.Background(), "zed", "/svc/Do")
	if scone.CodeOf(err) != scone.CodeUnavailable || len(toks) != 0 {
		t.Fatalf("Get with the holders cut off: %d SCONEs, %v; want Unavailable", len(toks), err)
	}
	g.net.Heal(g.stores[0].Name())
	g.net.Heal(g.stores[1].Name())
	g.net.Heal(g.stores[2].Name())
	eventually(t, 10*time.Second, func() error { // connections come back
		got, err := read(t, asker, sealer, "zed")
		if err == nil && got != "v1" {
			t.Fatalf("once healed: %q; want v1", got)
		}
		return err
	})
}
