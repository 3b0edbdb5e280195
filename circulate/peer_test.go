package circulate

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/circulate/circulatepb"
	"github.com/scone-project/scone/cluster"
)

// TestUpdatesKeepOneUndo: a holder keeps only the copy an UNDO would go
// back to, not every generation it was updated through, and an UNDO goes
// back exactly one step.
func TestUpdatesKeepOneUndo(t *testing.T) {
	s := loneStore(t, DefaultConfig().Lease, 2)
	p := peerServer{s: s}
	tok := sealed(t, time.Hour)
	// The copy's only holder is r itself, so its loop leaves it where it
	// is. A copy listing a holder that is not a live relay ("x") would be
	// r's to move (it is the first holder that still holds one): its loop
	// would hand it on to itself (hop 1) at its next pass, which a change
	// of membership may run at any time after New, and the updates of hop
	// 0 after it would be refused, rightly.
	put := func(mode pb.PutRequest_Mode, gen, base uint64) bool {
		t.Helper()
		r, err := p.Put(t.Context(), &pb.PutRequest{Mode: mode, Base: base,
			Copy: &pb.Copy{Key: "k", Gen: gen, Holders: []string{"r"}, Scones: [][]byte{tok}}})
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

// TestBusyHolderTakesNoUpdate: a holder whose copy of the client is busy
// (its own hand-off of it holds the slot) answers an UPDATE that it took
// nothing (FailedPrecondition), not a refusal: nothing says another write
// came first, and the sender's write fails Unavailable, not as a
// conflict.
func TestBusyHolderTakesNoUpdate(t *testing.T) {
	s := loneStore(t, DefaultConfig().Lease, 2)
	putCopy(t, s, "k")
	sl := s.slot("k")
	if err := sl.acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer sl.release()
	_, err := (peerServer{s: s}).Put(t.Context(), &pb.PutRequest{Mode: pb.PutRequest_UPDATE, Base: 3,
		Copy: &pb.Copy{Key: "k", Gen: 4, Hop: 1, Holders: []string{"r"}, Scones: [][]byte{sealed(t, time.Hour)}}})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("an UPDATE on a busy copy: %v, want FailedPrecondition", err)
	}
}

// TestPutCopyNeverServedAlone: a copy another relay put here (a hand-off
// or an update) is never served without asking the group, however recent:
// its sender may have given up on the put (it timed out) and gone on
// writing elsewhere before the put landed, late. Only a copy this relay
// committed itself, as the primary, is served alone within the Lease.
func TestPutCopyNeverServedAlone(t *testing.T) {
	s := loneStore(t, time.Hour, 1)
	const client = "alice"
	key := cluster.KeyOf(client)
	putCopy(t, s, key)
	got, err := s.Get(t.Context(), client, "/svc/Get")
	if err != nil || len(got) != 1 || testutil.ToFloat64(s.m.queries.WithLabelValues("local")) != 0 {
		t.Fatalf("a put copy: %d SCONEs, %v, served alone %v times; want 1 SCONE, found by a query",
			len(got), err, testutil.ToFloat64(s.m.queries.WithLabelValues("local")))
	}

	// The same copy, committed here as the primary: served alone.
	commit(t, s, key)
	if got, err := s.Get(t.Context(), client, "/svc/Get"); err != nil || len(got) != 1 {
		t.Fatalf("a committed copy within the lease: %d SCONEs, %v; want 1", len(got), err)
	}
	if testutil.ToFloat64(s.m.queries.WithLabelValues("local")) != 1 {
		t.Fatal("the committed copy was not served locally")
	}
}

// TestTooFewRelaysServeNothing: a relay that sees fewer relays than copies
// (it may be the one cut off) answers no request, whatever its copy: not
// one another relay put there, and not one it committed itself within its
// Lease, since the write of the reply would fail after the server had run
// the call.
func TestTooFewRelaysServeNothing(t *testing.T) {
	s := loneStore(t, time.Hour, 2)
	const client = "alice"
	key := cluster.KeyOf(client)
	putCopy(t, s, key)
	for _, committed := range []bool{false, true} {
		if committed {
			commit(t, s, key)
		}
		got, err := s.Get(t.Context(), client, "/svc/Get")
		if scone.CodeOf(err) != scone.CodeUnavailable || len(got) != 0 {
			t.Fatalf("alone, committed %v: %d SCONEs, %v; want unavailable", committed, len(got), err)
		}
	}
	if n := testutil.ToFloat64(s.m.queries.WithLabelValues("local")); n != 0 {
		t.Fatalf("served alone %v times", n)
	}
}

// putCopy puts a copy of key on s, as a hand-off from another relay would.
func putCopy(t *testing.T, s *Store, key string) {
	t.Helper()
	if _, err := (peerServer{s: s}).Put(t.Context(), &pb.PutRequest{Mode: pb.PutRequest_HANDOFF,
		Copy: &pb.Copy{Key: key, Gen: 3, Hop: 1, Holders: []string{"r"}, Scones: [][]byte{sealed(t, time.Hour)}}}); err != nil {
		t.Fatal(err)
	}
}

// commit marks s's copy of key as committed by s now, as its primary.
func commit(t *testing.T, s *Store, key string) {
	t.Helper()
	sl := s.slot(key)
	if err := sl.acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	it := *sl.state().it
	it.committed = time.Now()
	sl.set(&it)
	sl.release()
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

// loneStore starts a relay "r" alone in its group, with the given lease
// and copies and a dwell of an hour, closed when the test ends.
func loneStore(t *testing.T, lease time.Duration, copies int) *Store {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Name, cfg.GossipAddr, cfg.PeerAddr = "r", "127.0.0.1:0", "127.0.0.1:1"
	cfg.Lease, cfg.Copies = lease, copies
	cfg.Dwell = time.Hour // copies move only when the test says
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
