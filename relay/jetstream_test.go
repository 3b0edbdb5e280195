package relay_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/relay"
)

// TestJetStreamRelaysShareState: two relays share a bucket; a client moves
// between them, one is killed and another started, and nothing is lost.
func TestJetStreamRelaysShareState(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	store := jetStreamStore(t, connect(t, ns), 1)
	d, err := shop.Deploy(newSealer(t, newRing(t)), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ra, addrA := startRelay(t, relayConfig(d.Addrs(shop.RoleGateway), store))
	_, addrB := startRelay(t, relayConfig(d.Addrs(shop.RoleGateway), store))
	viaA, ctx := plainGateway(t, addrA, "alice")
	viaB, _ := plainGateway(t, addrB, "alice")

	for i, b := range shop.Catalog[:4] {
		gw := viaA
		if i%2 == 1 {
			gw = viaB
		}
		v, err := gw.AddItem(ctx, &pb.AddItemRequest{Isbn: b.Isbn, Quantity: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Lines) != i+1 {
			t.Fatalf("add %d: %d lines", i, len(v.Lines))
		}
	}
	// Relay A dies; B carries on, and a new relay C too.
	ra.Stop()
	v, err := viaB.GetCart(ctx, &pb.GetCartRequest{})
	if err != nil || len(v.Lines) != 4 || v.Operations != 4 {
		t.Fatalf("through B after A died: %v %v", v, err)
	}
	_, addrC := startRelay(t, relayConfig(d.Addrs(shop.RoleGateway), jetStreamStore(t, connect(t, ns), 1)))
	viaC, _ := plainGateway(t, addrC, "alice")
	if v, err := viaC.GetCart(ctx, &pb.GetCartRequest{}); err != nil || len(v.Lines) != 4 || v.Reserved != 4 {
		t.Fatalf("through a new relay C: %v %v", v, err)
	}
}

// TestJetStreamClusterNodeDown: with three replicas, one NATS server shut
// down loses nothing acknowledged.
func TestJetStreamClusterNodeDown(t *testing.T) {
	t.Parallel()
	cluster := startNATSCluster(t, 3)
	store := jetStreamStore(t, connect(t, cluster...), 3)
	d, err := shop.Deploy(newSealer(t, newRing(t)), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, addr := startRelay(t, relayConfig(d.Addrs(shop.RoleGateway), store))
	gw, ctx := plainGateway(t, addr, "alice")
	for _, b := range shop.Catalog[:3] {
		if _, err := gw.AddItem(ctx, &pb.AddItemRequest{Isbn: b.Isbn, Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// Shut down the NATS server that leads the bucket's stream.
	js := connect(t, cluster...)
	st, err := js.Stream(ctx, "KV_scone")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil || info.Cluster == nil {
		t.Fatalf("stream info: %v", err)
	}
	if info.Cluster.Replicas == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("the bucket has %d followers, want 2", len(info.Cluster.Replicas))
	}
	down := 0
	for _, ns := range cluster {
		if ns.Name() == info.Cluster.Leader {
			ns.Shutdown()
			down++
		}
	}
	if down != 1 {
		t.Fatalf("no server named %q, the stream's leader", info.Cluster.Leader)
	}
	v := eventually(t, func() (*pb.CartView, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return gw.GetCart(ctx, &pb.GetCartRequest{})
	})
	if len(v.Lines) != 3 || v.Operations != 3 {
		t.Fatalf("after a NATS server went down: %v", v)
	}
	if _, err := gw.AddItem(ctx, &pb.AddItemRequest{Isbn: dune, Quantity: 1}); err != nil {
		t.Fatalf("writing with two of three NATS servers: %v", err)
	}
}

// TestJetStreamVersionsAndExpiry: of concurrent writes that start from the
// same SCONE exactly one is kept and the others fail with CodeConflict (none
// is lost silently); expired SCONEs are not returned, and every write carries
// a time to live.
func TestJetStreamVersionsAndExpiry(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	js := connect(t, ns)
	now := time.Now()
	cfg := relay.DefaultJetStreamConfig()
	cfg.Now = func() time.Time { return now }
	store, err := relay.NewJetStreamStore(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := newSealer(t, newRing(t))
	seal := func(service string, v uint64, ttl time.Duration) []byte {
		tok, err := hook.Seal(s, nil, &scone.SCONE{Service: service, Scope: "/", Version: v, IssuedAt: now, Expires: now.Add(ttl)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ctx := context.Background()
	v1 := seal("cart", 1, time.Hour)
	if err := store.Apply(ctx, "alice", &hook.Reply{SCONEs: [][]byte{v1}}, nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	won, conflicts := 0, 0
	for i := range 20 {
		wg.Go(func() {
			err := store.Apply(ctx, "alice", &hook.Reply{SCONEs: [][]byte{seal("cart", uint64(2+i), time.Hour)}}, [][]byte{v1})
			mu.Lock()
			defer mu.Unlock()
			switch scone.CodeOf(err) {
			case scone.CodeUnknown:
				won++
			case scone.CodeConflict:
				conflicts++
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won != 1 || conflicts != 19 {
		t.Fatalf("20 writes from v1: %d kept, %d conflicts; want 1 and 19", won, conflicts)
	}
	got, err := store.Get(ctx, "alice", "/x")
	if err != nil || len(got) != 1 {
		t.Fatalf("Get: %d, %v", len(got), err)
	}
	// A late write from an old base never replaces the newer version.
	if err := store.Apply(ctx, "alice", &hook.Reply{SCONEs: [][]byte{seal("cart", 99, time.Hour)}}, [][]byte{v1}); scone.CodeOf(err) != scone.CodeConflict {
		t.Fatalf("a write from a stale base: %v", err)
	}
	// A short-lived SCONE beside it: gone from reads once it has been
	// expired for the store's MaxClockSkew.
	if err := store.Apply(ctx, "alice", &hook.Reply{SCONEs: [][]byte{seal("inventory", 1, time.Minute)}}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := store.Get(ctx, "alice", "/x"); len(got) != 2 {
		t.Fatalf("before expiry: %d", len(got))
	}
	now = now.Add(time.Minute)
	if got, _ := store.Get(ctx, "alice", "/x"); len(got) != 2 {
		t.Fatalf("at the inventory SCONE's expiry, within the clock skew tolerated: %d", len(got))
	}
	now = now.Add(cfg.MaxClockSkew)
	if got, _ := store.Get(ctx, "alice", "/x"); len(got) != 1 {
		t.Fatalf("after the inventory SCONE expired: %d", len(got))
	}
	if n := store.Expired(); n != 1 {
		t.Fatalf("Expired() = %d after a read skipped one expired SCONE, want 1", n)
	}
	// The key carries a TTL, so JetStream deletes it at the latest expiry.
	st, err := js.Stream(ctx, "KV_scone")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Config.AllowMsgTTL || info.State.Msgs != 1 {
		t.Fatalf("bucket: TTLs allowed %v, %d messages for one client", info.Config.AllowMsgTTL, info.State.Msgs)
	}
	last, err := st.GetLastMsgForSubject(ctx, "$KV.scone.>")
	if err != nil {
		t.Fatal(err)
	}
	if ttl := last.Header.Get("Nats-TTL"); ttl == "" {
		t.Fatalf("the key's last write has no TTL: %v", last.Header)
	}
}

// TestJetStreamRememberedRevision: a relay updates a key from the revision
// it last read, without reading it again; when another relay wrote in
// between, the compare-and-set fails, the relay reads again, and the update
// fails with CodeConflict, keeping the other relay's write.
func TestJetStreamRememberedRevision(t *testing.T) {
	t.Parallel()
	ns := startNATS(t)
	a := jetStreamStore(t, connect(t, ns), 1)
	b := jetStreamStore(t, connect(t, ns), 1)
	s := newSealer(t, newRing(t))
	now := time.Now()
	seal := func(v uint64) []byte {
		tok, err := hook.Seal(s, nil, &scone.SCONE{Service: "cart", Scope: "/", Version: v, IssuedAt: now, Expires: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	ctx := context.Background()
	v1 := seal(1)
	if err := a.Apply(ctx, "alice", &hook.Reply{SCONEs: [][]byte{v1}}, nil); err != nil {
		t.Fatal(err)
	}
	sentA, err := a.Get(ctx, "alice", "/x")
	if err != nil || len(sentA) != 1 {
		t.Fatalf("a.Get: %d, %v", len(sentA), err)
	}
	sentB, err := b.Get(ctx, "alice", "/x")
	if err != nil || len(sentB) != 1 {
		t.Fatalf("b.Get: %d, %v", len(sentB), err)
	}
	if err := b.Apply(ctx, "alice", &hook.Reply{SCONEs: [][]byte{seal(2)}}, sentB); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(ctx, "alice", &hook.Reply{SCONEs: [][]byte{seal(3)}}, sentA); scone.CodeOf(err) != scone.CodeConflict {
		t.Fatalf("an update from a revision another relay has since replaced: %v, want a conflict", err)
	}
	for _, st := range []*relay.JetStreamStore{a, b} {
		got, err := st.Get(ctx, "alice", "/x")
		if err != nil || len(got) != 1 {
			t.Fatalf("Get: %d, %v", len(got), err)
		}
		if h, err := hook.Peek(got[0]); err != nil || h.Version != 2 {
			t.Fatalf("kept version %d (%v), want 2", h.Version, err)
		}
	}
	// From what it has just read, a goes on without a conflict.
	sentA, _ = a.Get(ctx, "alice", "/x")
	if err := a.Apply(ctx, "alice", &hook.Reply{SCONEs: [][]byte{seal(3)}}, sentA); err != nil {
		t.Fatal(err)
	}
}
