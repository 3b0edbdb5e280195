package relay_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/badinput"
	"github.com/scone-project/scone/internal/badinput/badgrpc"
	"github.com/scone-project/scone/relay"
)

// TestBadInput sends every gRPC case of the bad-input corpus through a
// relay (verifying with the services' keys) to the bookstore: from alice,
// whose session the relay holds, in metadata and in the message body, and
// from a client the relay does not know. A client that sends SCONEs holds
// them itself, so the relay passes them on and each case gets the status
// the server hook documents; after each, the session the relay holds for
// alice is unchanged.
func TestBadInput(t *testing.T) {
	c, err := badinput.Load("../testdata/badinput")
	if err != nil {
		t.Fatal(err)
	}
	primary, keys, err := scone.ParseKeyFile(c.Keys)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := scone.NewKeyRing(primary, keys...)
	if err != nil {
		t.Fatal(err)
	}
	d, err := shop.Deploy(newSealer(t, ring), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	cfg := relayConfig(d.Addrs(shop.RoleGateway), nil)
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(lis)
	t.Cleanup(r.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	gw := pb.NewGatewayClient(conn)
	alice := metadata.Pairs("scone-client", "alice")
	actx := metadata.NewOutgoingContext(context.Background(), alice)
	for range 2 {
		if _, err := gw.AddItem(actx, &pb.AddItemRequest{Isbn: "9780441013593", Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	const method = "/bookstore.v1.Gateway/GetCart"
	ctx := context.Background()
	cases := c.Select(true)
	for _, cs := range cases {
		for _, b := range cs.BeforePayloads {
			before := badinput.Case{Carrier: badinput.Envelope, Payloads: [][]byte{b}}
			if err := badgrpc.Call(ctx, conn, method, &before, alice, &pb.GetCartRequest{}, &pb.CartView{}); err != nil {
				t.Fatalf("%s: the SCONE presented first: %v", cs.Name, err)
			}
		}
		type send struct {
			how  string
			md   metadata.MD
			call func(context.Context, grpc.ClientConnInterface, string, *badinput.Case, metadata.MD, *pb.GetCartRequest, *pb.CartView) error
		}
		sends := []send{{"alice, metadata", alice, callMeta}, {"anonymous, metadata", nil, callMeta}}
		if cs.Carrier == badinput.Envelope {
			sends = append(sends, send{"alice, body", alice, callBody})
		}
		for _, s := range sends {
			var v pb.CartView
			err := s.call(ctx, conn, method, &cs, s.md, &pb.GetCartRequest{}, &v)
			ops := cs.Operations
			if cs.Carrier == badinput.Metadata && s.md != nil {
				// Not on a carrier: to the relay, alice sent no SCONE of
				// her own, so it attaches the session it holds for her.
				ops = 2
			}
			if err := badgrpc.Check(err, cs.GRPC); err != nil {
				t.Errorf("%s (%s): %v", cs.Name, s.how, err)
			} else if cs.GRPC.OK() && v.Operations != ops {
				t.Errorf("%s (%s): accepted with %d operations, want %d", cs.Name, s.how, v.Operations, ops)
			}
		}
		v, err := gw.GetCart(actx, &pb.GetCartRequest{})
		if err != nil || v.Operations != 2 || len(v.Lines) != 1 || v.Lines[0].Quantity != 2 {
			t.Fatalf("after %s, the relay restores alice's cart as %v, %v; want 2 operations, 2 books", cs.Name, v, err)
		}
	}
	if len(cases) < 30 {
		t.Errorf("only %d gRPC cases in the corpus", len(cases))
	}
}

func callMeta(ctx context.Context, conn grpc.ClientConnInterface, method string, cs *badinput.Case, md metadata.MD, req *pb.GetCartRequest, reply *pb.CartView) error {
	return badgrpc.Call(ctx, conn, method, cs, md, req, reply)
}

func callBody(ctx context.Context, conn grpc.ClientConnInterface, method string, cs *badinput.Case, md metadata.MD, req *pb.GetCartRequest, reply *pb.CartView) error {
	return badgrpc.CallBody(ctx, conn, method, cs, md, req, reply)
}
