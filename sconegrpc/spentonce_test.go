package sconegrpc_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/sconegrpc"
)

// TestSpentOnceThroughTiers runs the bookstore's three tiers with a shared
// mark store and checks two stories that cross tiers.
//
// A front end fails after its back end sealed: the gateway's handler
// changes the cart (which seals a new cart SCONE) and then the call fails.
// The shopper keeps its SCONEs, and its next call goes on from them: only
// the tier the client called spends versions (its bundle pins the cart's),
// so the cart's unsent version is simply never used. The failed call's
// change is not in the cart.
//
// A reply is lost: the shopper presents its previous SCONEs again. The
// gateway refuses them (rolled_back) and gives back the whole lost reply,
// the cart's and inventory's new SCONEs with the gateway's, so the shopper
// goes on without repeating the call: the lost call's change is in the cart
// once.
func TestSpentOnceThroughTiers(t *testing.T) {
	t.Parallel()
	s := newSealer(t, scone.WithMarkStore(scone.NewMemoryMarkStore(1000, nil)))
	d := deploy(t, s, 1)

	// A gateway of our own on the deployment's back ends, which fails a
	// call after its handler ran when told to.
	var failNext atomic.Bool
	failAfter := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err == nil && failNext.CompareAndSwap(true, false) {
			return nil, status.Error(codes.Internal, "failed after the handler ran")
		}
		return resp, err
	}
	srv := grpc.NewServer(append(sconegrpc.ServerOptions(s), grpc.ChainUnaryInterceptor(failAfter))...)
	b := d.Backends()
	pb.RegisterGatewayServer(srv, &shop.Gateway{Cart: b.Cart, Inventory: b.Inventory})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	dial := func(dict *scone.Dict) pb.GatewayClient {
		conn, err := shop.DialReplicas([]string{lis.Addr().String()}, sconegrpc.DialOptions(sconegrpc.WithHolder(dict))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return pb.NewGatewayClient(conn)
	}
	ctx := context.Background()
	dict := scone.NewDict()
	gw := dial(dict)
	add := func(gw pb.GatewayClient) error {
		_, err := gw.AddItem(ctx, &pb.AddItemRequest{Isbn: dune, Quantity: 1})
		return err
	}
	books := func(gw pb.GatewayClient) int32 {
		t.Helper()
		v, err := gw.GetCart(ctx, &pb.GetCartRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var n int32
		for _, l := range v.Lines {
			n += l.Quantity
		}
		return n
	}
	if err := add(gw); err != nil {
		t.Fatal(err)
	}

	failNext.Store(true)
	if err := add(gw); status.Code(err) != codes.Internal {
		t.Fatalf("the failing call: %v", err)
	}
	if err := add(gw); err != nil {
		t.Fatalf("the call after a front end failed past its back end's seal: %v", err)
	}
	if n := books(gw); n != 2 {
		t.Fatalf("the cart holds %d books after 2 acknowledged adds and 1 failed, want 2", n)
	}

	// The lost reply: a holder with the SCONEs from before the call.
	before := scone.NewDict()
	for _, tok := range dict.Tokens() {
		before.Put(tok)
	}
	if err := add(gw); err != nil { // its reply "is lost"
		t.Fatal(err)
	}
	stale := dial(before)
	err = add(stale)
	if scone.CodeOf(err) != scone.CodeRolledBack {
		t.Fatalf("the call after a lost reply: %v, want rolled_back", err)
	}
	if n := books(stale); n != 3 {
		t.Fatalf("after the refusal the holder sees %d books, want the lost call's 3", n)
	}
	if err := add(stale); err != nil {
		t.Fatalf("going on after the recovery: %v", err)
	}
	if n := books(stale); n != 4 {
		t.Fatalf("the cart holds %d books, want 4: the lost call counted once", n)
	}
}
