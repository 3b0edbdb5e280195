package circulate

import (
	"testing"
	"time"

	pb "github.com/scone-project/scone/circulate/circulatepb"
)

// TestUpdatesKeepOneUndo: a holder keeps only the copy an UNDO would go
// back to, not every generation it was updated through, and an UNDO goes
// back exactly one step.
func TestUpdatesKeepOneUndo(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Name, cfg.GossipAddr, cfg.PeerAddr = "r", "127.0.0.1:0", "127.0.0.1:1"
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
