package circulate_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/circulate"
	pb "github.com/scone-project/scone/circulate/circulatepb"
	"github.com/scone-project/scone/cluster"
	"github.com/scone-project/scone/internal/hook"
)

// next seals the successor of prev (nil: a first SCONE) of service svc,
// holding data.
func next(t testing.TB, s *scone.Sealer, prev []byte, data string) []byte {
	t.Helper()
	st, err := s.Restore(context.Background(), prev, scone.Expect{Service: "svc"}, "/svc/")
	if err != nil {
		t.Fatal(err)
	}
	st.SetData([]byte(data))
	_, tok, err := s.Commit(nil, st)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestConcurrentWritesOneWins: two relays read the same state of a client
// and write successors of it at once; one wins, the other fails with
// CodeConflict, and every relay then reads the winner.
func TestConcurrentWritesOneWins(t *testing.T) {
	sealer := newSealer(t)
	g := newGroup(t, 3, sealer, nil)
	a, b := g.relays[0].store, g.relays[1].store
	ctx := context.Background()
	if got, err := a.Get(ctx, "zed", "/svc/Do"); err != nil || len(got) != 0 {
		t.Fatalf("a new client: %v, %v", got, err)
	}
	v1 := next(t, sealer, nil, "v1")
	if err := a.Apply(ctx, "zed", &hook.Reply{SCONEs: [][]byte{v1}}, nil); err != nil {
		t.Fatal(err)
	}
	for round := range 5 {
		sa, err := a.Get(ctx, "zed", "/svc/Do")
		if err != nil {
			t.Fatal(err)
		}
		sb, err := b.Get(ctx, "zed", "/svc/Do")
		if err != nil {
			t.Fatal(err)
		}
		if len(sa) != 1 || len(sb) != 1 || string(sa[0]) != string(sb[0]) {
			t.Fatalf("round %d: the relays read different states", round)
		}
		ta, tb := next(t, sealer, sa[0], "a"), next(t, sealer, sb[0], "b")
		errs := make(chan error, 2)
		go func() { errs <- a.Apply(ctx, "zed", &hook.Reply{SCONEs: [][]byte{ta}}, sa) }()
		go func() { errs <- b.Apply(ctx, "zed", &hook.Reply{SCONEs: [][]byte{tb}}, sb) }()
		e1, e2 := <-errs, <-errs
		if (e1 == nil) == (e2 == nil) {
			t.Fatalf("round %d: both writes of one state ended alike: %v, %v", round, e1, e2)
		}
		if e := max(scone.CodeOf(e1), scone.CodeOf(e2)); e != scone.CodeConflict {
			t.Fatalf("round %d: the loser failed with %v, want conflict", round, e)
		}
		got, err := g.relays[1].store.Get(ctx, "zed", "/svc/Do")
		if err != nil || len(got) != 1 || string(got[0]) != string(ta) && string(got[0]) != string(tb) {
			t.Fatalf("round %d: a third relay reads %d SCONEs, %v, not the winner", round, len(got), err)
		}
		time.Sleep(150 * time.Millisecond) // let the copies move between rounds
	}
}

// TestOldNeverOverwritesNewer sends a holder older copies of a client, as
// a hand-off, an update and a retirement would, and checks that it keeps
// the newer one.
func TestOldNeverOverwritesNewer(t *testing.T) {
	sealer := newSealer(t)
	// Two relays for two copies, and a long dwell: the copies stay put.
	g := newGroup(t, 2, sealer, func(c *circulate.Config) { c.Dwell = time.Hour })
	ctx := context.Background()
	s := g.relays[0].store
	if _, err := s.Get(ctx, "zed", "/svc/Do"); err != nil {
		t.Fatal(err)
	}
	v1 := next(t, sealer, nil, "v1")
	if err := s.Apply(ctx, "zed", &hook.Reply{SCONEs: [][]byte{v1}}, nil); err != nil {
		t.Fatal(err)
	}
	sent, _ := s.Get(ctx, "zed", "/svc/Do")
	v2 := next(t, sealer, v1, "v2")
	if err := s.Apply(ctx, "zed", &hook.Reply{SCONEs: [][]byte{v2}}, sent); err != nil {
		t.Fatal(err)
	}
	key := cluster.KeyOf("zed")
	var holder *member
	var gen, hop uint64
	for _, m := range g.live() {
		if c, ok := m.store.Copies()[key]; ok {
			holder, gen, hop = m, c[0], c[1]
			break
		}
	}
	if holder == nil || gen != 2 {
		t.Fatalf("no holder of generation 2: %v, %d", holder, gen)
	}
	conn, err := grpc.NewClient(holder.peer, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer := pb.NewCirculationClient(conn)
	old := &pb.Copy{Key: key, Gen: gen - 1, Hop: hop + 5, Holders: []string{holder.name}, Scones: [][]byte{v1}}
	for _, req := range []*pb.PutRequest{
		{Mode: pb.PutRequest_HANDOFF, Copy: old},
		{Mode: pb.PutRequest_UPDATE, Copy: &pb.Copy{Key: key, Gen: gen + 1, Hop: hop, Holders: old.Holders, Scones: old.Scones}, Base: gen - 1},
		{Mode: pb.PutRequest_UNDO, Copy: old},
	} {
		r, err := peer.Put(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if req.Mode != pb.PutRequest_UNDO && r.Ok {
			t.Errorf("%v of an older copy accepted", req.Mode)
		}
	}
	if _, err := peer.Retire(ctx, &pb.RetireRequest{Key: key, Gen: gen - 1, Hop: hop + 5}); err != nil {
		t.Fatal(err)
	}
	if c, ok := holder.store.Copies()[key]; !ok || c != [2]uint64{gen, hop} {
		t.Fatalf("the holder now has %v (held: %v), want generation %d hop %d", c, ok, gen, hop)
	}
	got, err := g.relays[1].store.Get(ctx, "zed", "/svc/Do")
	if err != nil || len(got) != 1 || string(got[0]) != string(v2) {
		t.Fatalf("the client reads %d SCONEs, %v, not version 2", len(got), err)
	}
	// Malformed copies are refused with InvalidArgument, and change nothing.
	if _, err := peer.Put(ctx, &pb.PutRequest{Copy: &pb.Copy{Key: key, Holders: []string{"x"}, Scones: [][]byte{[]byte("junk")}}}); err == nil {
		t.Fatal("a malformed copy accepted")
	}
	if c := holder.store.Copies()[key]; c != [2]uint64{gen, hop} {
		t.Fatalf("after a malformed copy, the holder has %v", c)
	}
}
