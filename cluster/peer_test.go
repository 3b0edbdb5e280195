package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/scone-project/scone/cluster/clusterpb"
	"github.com/scone-project/scone/internal/membership"
)

// offlineNode is a Node with a store and no network, to serve the Peer
// protocol in tests.
func offlineNode(members ...string) *Node {
	n := &Node{store: newStore()}
	n.cfg.Now = time.Now
	n.members = membership.Static(membership.Config{Name: "self"}, func(*grpc.ClientConn) *peerLink { return nil })
	for _, m := range append(members, "self") {
		n.members.MemberUp(m, "")
	}
	return n
}

func storeOp(key string, rv, base uint64, repair bool) *pb.Op {
	return &pb.Op{Op: &pb.Op_Store{Store: &pb.StoreRequest{
		Record: &pb.Record{Key: key, Rv: rv, Stamp: int64(rv), Scones: [][]byte{[]byte("s")}, Copies: 2},
		Base:   base, Repair: repair,
	}}}
}

func TestPeerBatch(t *testing.T) {
	p := peerServer{n: offlineNode()}
	req := &pb.BatchRequest{Ops: []*pb.Op{
		storeOp("a", 1, 0, false),
		storeOp("a", 2, 1, false),
		{Op: &pb.Op_Store{Store: &pb.StoreRequest{Record: &pb.Record{Key: "a", Rv: 2, Stamp: 99}}}}, // from base 0: refused
		{Op: &pb.Op_Fetch{Fetch: &pb.FetchRequest{Key: "a"}}},
		{Op: &pb.Op_Undo{Undo: &pb.UndoRequest{Key: "a", Rv: 2, Stamp: 2}}},
		{Op: &pb.Op_Fetch{Fetch: &pb.FetchRequest{Key: "a"}}},
		{Op: &pb.Op_Fetch{Fetch: &pb.FetchRequest{Key: "none"}}},
		// An undo that comes before its write fences it.
		{Op: &pb.Op_Undo{Undo: &pb.UndoRequest{Key: "b", Rv: 1, Stamp: 1}}},
		storeOp("b", 1, 0, false),
	}}
	resp, err := p.Batch(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	r := resp.GetReplies()
	if len(r) != len(req.Ops) || resp.GetView() != p.n.members.View().Hash {
		t.Fatalf("%d replies for %d operations, view %d", len(r), len(req.Ops), resp.GetView())
	}
	if r[0].GetStore().GetVerdict() != pb.StoreReply_ACCEPTED || r[1].GetStore().GetVerdict() != pb.StoreReply_ACCEPTED {
		t.Fatalf("writes refused: %v %v", r[0], r[1])
	}
	if v := r[2].GetStore(); v.GetVerdict() != pb.StoreReply_CONFLICT || v.GetRv() != 2 {
		t.Fatalf("write from an old base: %v, want conflict at rv 2", v)
	}
	if f := r[3].GetFetch(); !f.GetFound() || f.GetRecord().GetRv() != 2 {
		t.Fatalf("fetch: %v", f)
	}
	if !r[4].GetUndo().GetUndone() {
		t.Fatal("undo of the held version failed")
	}
	if f := r[5].GetFetch(); f.GetRecord().GetRv() != 1 {
		t.Fatalf("fetch after undo: %v, want rv 1", f)
	}
	if r[6].GetFetch().GetFound() {
		t.Fatal("found a record never stored")
	}
	if u := r[7].GetUndo(); u.GetUndone() || !u.GetFenced() || u.GetRv() != 0 {
		t.Fatalf("undo before the write: %v, want fenced at rv 0", u)
	}
	if v := r[8].GetStore().GetVerdict(); v != pb.StoreReply_CONFLICT {
		t.Fatalf("a fenced write: %v, want conflict", v)
	}
	// A store without a record, or an empty operation, fails the batch.
	for _, op := range []*pb.Op{{Op: &pb.Op_Store{Store: &pb.StoreRequest{}}}, {}} {
		_, err := p.Batch(context.Background(), &pb.BatchRequest{Ops: []*pb.Op{op}})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("bad operation %v: %v, want InvalidArgument", op, err)
		}
	}
}

// FuzzPeerBatch feeds the Peer protocol arbitrary batches: any input is
// answered, refused whole (a batch of another view: nothing runs) or
// refused as invalid, never a panic, and what a node holds afterwards is
// what a fetch returns.
func FuzzPeerBatch(f *testing.F) {
	seed, _ := proto.Marshal(&pb.BatchRequest{Ops: []*pb.Op{
		storeOp("a", 1, 0, false), storeOp("a", 3, 0, true),
		{Op: &pb.Op_Fetch{Fetch: &pb.FetchRequest{Key: "a"}}},
		{Op: &pb.Op_Undo{Undo: &pb.UndoRequest{Key: "a", Rv: 3, Stamp: 3}}},
	}})
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var req pb.BatchRequest
		if proto.Unmarshal(data, &req) != nil {
			return
		}
		n := offlineNode()
		p := peerServer{n: n}
		resp, err := p.Batch(context.Background(), &req)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("error %v is not InvalidArgument", err)
			}
			return
		}
		if resp.GetRefused() {
			// The sender named another view than the node's: no
			// operation ran, and none is answered.
			if len(resp.GetReplies()) != 0 || len(n.store.keys()) != 0 {
				t.Fatalf("a refused batch: %d replies, %d records held; want none", len(resp.GetReplies()), len(n.store.keys()))
			}
			return
		}
		if len(resp.GetReplies()) != len(req.GetOps()) {
			t.Fatalf("%d replies for %d operations", len(resp.GetReplies()), len(req.GetOps()))
		}
		for _, key := range n.store.keys() {
			got, err := p.Batch(context.Background(), &pb.BatchRequest{Ops: []*pb.Op{{Op: &pb.Op_Fetch{Fetch: &pb.FetchRequest{Key: key}}}}})
			if err != nil || got.GetReplies()[0].GetFetch().GetRecord().GetKey() != key {
				t.Fatalf("fetch of held key %q: %v %v", key, got, err)
			}
		}
	})
}

// TestPeerBatchViewsDiffer: a node runs none of a batch whose sender sees
// other members (one of them is cut off from the others' gossip, and they
// may disagree on who owns a record); a batch that names no view (an older
// node) runs.
func TestPeerBatchViewsDiffer(t *testing.T) {
	p := peerServer{n: offlineNode()}
	own := p.n.members.View().Hash
	resp, err := p.Batch(context.Background(), &pb.BatchRequest{View: own + 1, Ops: []*pb.Op{storeOp("a", 1, 0, false)}})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetRefused() || len(resp.GetReplies()) != 0 || resp.GetView() != own {
		t.Fatalf("a batch from another view: %v, want refused with no replies", resp)
	}
	if p.n.store.get("a") != nil {
		t.Fatal("a refused batch changed the store")
	}
	for i, view := range []uint64{own, 0} {
		resp, err := p.Batch(context.Background(), &pb.BatchRequest{View: view, Ops: []*pb.Op{storeOp("a", uint64(i)+1, uint64(i), false)}})
		if err != nil || resp.GetRefused() || len(resp.GetReplies()) != 1 {
			t.Fatalf("a batch with view %d: %v, %v; want it run", view, resp, err)
		}
	}
}

// TestSettling: for the Lease after an owner of a record left the members
// (it may only be cut off from the others' gossip, and still serve reads
// from its own copy within its lease), the record is not written: Settling
// reports it, and a Peer store of it is refused; records it did not own
// are not held up.
func TestSettling(t *testing.T) {
	n := &Node{store: newStore()}
	n.cfg.Now, n.cfg.Lease = time.Now, time.Hour
	n.members = membership.Static(membership.Config{Name: "a", Lease: time.Hour}, func(*grpc.ClientConn) *peerLink { return nil })
	for _, m := range []string{"a", "b", "c", "d"} {
		n.members.MemberUp(m, "")
	}
	n.members.MemberGone("d", "", time.Now())
	var held, free string
	for i := 0; held == "" || free == ""; i++ {
		key := fmt.Sprint("k", i)
		if slices.Contains(Owners(key, []string{"a", "b", "c", "d"}, 2), "d") {
			held = key
		} else {
			free = key
		}
	}
	if !n.settling(held, 2) || n.settling(free, 2) {
		t.Fatalf("settling: %v for a record the gone member owned, %v for one it did not", n.settling(held, 2), n.settling(free, 2))
	}
	p := peerServer{n: n}
	resp, err := p.Batch(context.Background(), &pb.BatchRequest{Ops: []*pb.Op{storeOp(held, 1, 0, false), storeOp(free, 1, 0, false), storeOp(held, 1, 0, true)}})
	if err != nil {
		t.Fatal(err)
	}
	r := resp.GetReplies()
	if r[0].GetStore().GetVerdict() != pb.StoreReply_CONFLICT || r[1].GetStore().GetVerdict() != pb.StoreReply_ACCEPTED || r[2].GetStore().GetVerdict() != pb.StoreReply_ACCEPTED {
		t.Fatalf("stores while settling: %v; want the write refused, the other record's write and the repair taken", r)
	}
	n.members.MemberGone("d", "", time.Now().Add(-2*time.Hour))
	if n.settling(held, 2) {
		t.Fatal("still settling once the lease ran out")
	}
}
