package circulate

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/circulate/circulatepb"
	"github.com/scone-project/scone/cluster"
)

// TestUpdatesKeepOneUndo: a holder keeps only the copy an UNDO would go
// back to, not every generation it was updated through, and an UNDO goes
// back exactly one step.
func TestUpdatesKeepOneUndo(t *testing.T) {
	s := loneStore(t, DefaultConfig().Lease)
	p := peerServer{s: s}
	tok := sealed(t, time.Hour)
	put := func(mode pb.PutRequest_Mode, gen, base uint64) bool {
		t.Helper()
		r, err := p.Put(t.Context(), &pb.PutRequest{Mode: mode, Base: base,
			Copy: &pb.Copy{Key: "k", Gen: gen, Holders: []string{"x", "r"}, Scones: [][]byte{tok}}})
		if err != nil {
			t.Fatal(err)
		}
		return r.Ok
	}
	if !put(pb.PutRequest_HANDOFF, 1, 0) {
		t.Fatal("the first copy refused")
	}
	for gen := uint64(2); gen <= 5; gen++ {
		if !put(pb.PutRequest_UPDATE, gen, gen-1) {
			t.Fatalf("update to generation %d refused", gen)
		}
	}
	it := s.slot("k").state().it
	if it.gen != 5 || it.prev == nil || it.prev.gen != 4 || it.prev.prev != nil {
		t.Fatalf("after 4 updates: gen %d, kept %+v", it.gen, it.prev)
	}
	put(pb.PutRequest_UNDO, 5, 0)
	if it := s.slot("k").state().it; it == nil || it.gen != 4 || it.prev != nil {
		t.Fatalf("after an undo: %+v, want generation 4 with nothing more to undo", it)
	}
}

// TestPutCopyNeverServedAlone: a copy another relay put here (a hand-off
// or an update) is never served without asking the group, however recent:
// its sender may have given up on the put (it timed out) and gone on
// writing elsewhere before the put landed, late. Only a copy this relay
// committed itself, as the primary, is served alone within the Lease.
func TestPutCopyNeverServedAlone(t *testing.T) {
	s := loneStore(t, time.Hour)
	const client = "alice"
	key := cluster.KeyOf(client)
	tok := sealed(t, time.Hour)
	if _, err := (peerServer{s: s}).Put(t.Context(), &pb.PutRequest{Mode: pb.PutRequest_HANDOFF,
		Copy: &pb.Copy{Key: key, Gen: 3, Hop: 1, Holders: []string{"r", "x"}, Scones: [][]byte{tok}}}); err != nil {
		t.Fatal(err)
	}
	// Alone, with two copies per client, the relay may be the one cut off:
	// it answers nothing, and does not use its own copy.
	got, err := s.Get(t.Context(), client, "/svc/Get")
	if scone.CodeOf(err) != scone.CodeUnavailable || len(got) != 0 || testutil.ToFloat64(s.m.queries.WithLabelValues("local")) != 0 {
		t.Fatalf("a put copy, alone: %d SCONEs, %v; want unavailable", len(got), err)
	}

	// The same copy, committed here as the primary: served alone.
	sl := s.slot(key)
	if err := sl.acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	it := *sl.state().it
	it.committed = time.Now()
	sl.set(&it)
	sl.release()
	if got, err := s.Get(t.Context(), client, "/svc/Get"); err != nil || len(got) != 1 {
		t.Fatalf("a committed copy within the lease: %d SCONEs, %v; want 1", len(got), err)
	}
	if testutil.ToFloat64(s.m.queries.WithLabelValues("local")) != 1 {
		t.Fatal("the committed copy was not served locally")
	}
}

// TestNoTakeoverWithinLease: a relay that became the first live holder of
// a copy because the holder before it left the group waits out the Lease
// before moving the copy: the one that left may only be cut off from the
// others' gossip and still serve reads from a copy it committed.
func TestNoTakeoverWithinLease(t *testing.T) {
	r := rules{self: "r", copies: 2, dwell: time.Second, lease: time.Hour, settle: 3 * time.Second}
	now, mono := time.Now(), time.Now()
	it := &item{key: "k", gen: 1, holders: []string{"x", "r"}, since: now.Add(-time.Minute), expires: now.Add(time.Hour)}
	k := knowledge{members: []string{"r", "y"}, joined: map[string]time.Time{"r": now.Add(-time.Hour), "y": now.Add(-time.Hour)},
		departed: map[string]time.Time{"x": mono}}
	if got := r.next(k, it, now, mono); got != stepNone {
		t.Fatalf("within the lease of the holder that left: %v, want none", got)
	}
	if got := r.next(k, it, now, mono.Add(2*time.Hour)); got != stepHandoff {
		t.Fatalf("once the lease has run out: %v, want handoff", got)
	}
}

// loneStore starts a relay "r" alone in its group, with the given lease,
// closed when the test ends.
func loneStore(t *testing.T, lease time.Duration) *Store {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Name, cfg.GossipAddr, cfg.PeerAddr = "r", "127.0.0.1:0", "127.0.0.1:1"
	cfg.Lease = lease
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
