package sconegrpc_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/badinput"
	"github.com/scone-project/scone/internal/badinput/badgrpc"
	"github.com/scone-project/scone/internal/grpcframe"
	"github.com/scone-project/scone/internal/hook"
)

const getCart = "/bookstore.v1.Gateway/GetCart"

// corpusSealer returns a Sealer with the bad-input corpus's keys.
func corpusSealer(t testing.TB, c *badinput.Corpus, opts ...scone.Option) *scone.Sealer {
	t.Helper()
	primary, keys, err := scone.ParseKeyFile(c.Keys)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := scone.NewKeyRing(primary, keys...)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scone.NewSealer(ring, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBadInput sends every gRPC case of the bad-input corpus to the
// bookstore's gateway, in metadata and (for SCONEs) in the message body,
// from a client without the hook. Each must get the status the manifest
// documents; after each, a shopper's own SCONEs still restore its cart, so
// no bad input changed what a holder keeps. With anti-rollback on, the
// rolled-back case is refused.
func TestBadInput(t *testing.T) {
	c, err := badinput.Load("../testdata/badinput")
	if err != nil {
		t.Fatal(err)
	}
	for _, hw := range []bool{false, true} {
		name := "client-mode"
		var opts []scone.Option
		if hw {
			name = "anti-rollback"
			opts = append(opts, scone.WithMarkStore(scone.NewMemoryMarkStore(1000, time.Now)))
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			d := deploy(t, corpusSealer(t, c, opts...), 1)
			s := newShopper(t, d)
			ctx := context.Background()
			for range 2 {
				if _, err := s.AddItem(ctx, &pb.AddItemRequest{Isbn: "9780441013593", Quantity: 1}); err != nil {
					t.Fatal(err)
				}
			}
			raw, err := grpc.NewClient(d.Addrs(shop.RoleGateway)[0], grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			cases := c.Select(true)
			for _, cs := range cases {
				want := cs.GRPC
				if hw && cs.HighWater != nil {
					want = cs.HighWater
				}
				for _, b := range cs.BeforePayloads {
					before := badinput.Case{Carrier: badinput.Envelope, Payloads: [][]byte{b}}
					if err := badgrpc.Call(ctx, raw, getCart, &before, nil, &pb.GetCartRequest{}, &pb.CartView{}); err != nil {
						t.Fatalf("%s: the SCONE presented first: %v", cs.Name, err)
					}
				}
				var v pb.CartView
				err := badgrpc.Call(ctx, raw, getCart, &cs, nil, &pb.GetCartRequest{}, &v)
				if err := badgrpc.Check(err, want); err != nil {
					t.Errorf("%s (metadata): %v", cs.Name, err)
				} else if want.OK() && v.Operations != cs.Operations {
					t.Errorf("%s (metadata): accepted with %d operations, want %d", cs.Name, v.Operations, cs.Operations)
				}
				if cs.Carrier == badinput.Envelope {
					v.Reset()
					bodyWant := want
					if h, err := hook.Peek(cs.Payloads[0]); hw && want.OK() && err == nil && string(h.Service) == c.Service {
						// The metadata call spent the version: with marks on,
						// presenting it again is a replay.
						bodyWant = &badinput.Expect{Code: "rolled_back", Status: "FailedPrecondition"}
					}
					err := badgrpc.CallBody(ctx, raw, getCart, &cs, nil, &pb.GetCartRequest{}, &v)
					if err := badgrpc.Check(err, bodyWant); err != nil {
						t.Errorf("%s (body): %v", cs.Name, err)
					} else if bodyWant.OK() && v.Operations != cs.Operations {
						t.Errorf("%s (body): accepted with %d operations, want %d", cs.Name, v.Operations, cs.Operations)
					}
				}
				if cs.Carrier == badinput.Envelope && !want.OK() {
					// Through the shopper's own hook, beside its SCONEs: a
					// bad one that is newer and in scope (or unreadable) is
					// picked and refused; an older one or one of another
					// scope is not picked, and the call succeeds. Either
					// way the shopper keeps what it had.
					fr := grpcframe.AppendFrame(nil, &grpcframe.Frame{SCONEs: cs.Payloads})
					v, err := s.GetCart(metadata.AppendToOutgoingContext(ctx, grpcframe.MetadataKey, string(fr)), &pb.GetCartRequest{})
					h, perr := hook.Peek(cs.Payloads[0])
					if perr == nil && (string(h.Scope) != c.Scope || h.Version < 1000) {
						if err != nil || v.Operations != 2 {
							t.Errorf("%s (with the shopper's SCONEs): %v, %v; want the shopper's state", cs.Name, v, err)
						}
					} else if err := badgrpc.Check(err, want); err != nil {
						t.Errorf("%s (with the shopper's SCONEs): %v", cs.Name, err)
					}
				}
				checkCart(t, cs.Name, s)
			}
			if len(cases) < 30 {
				t.Errorf("only %d gRPC cases in the corpus", len(cases))
			}
		})
	}
}

// checkCart checks that the shopper's SCONEs still restore its session:
// two operations, two copies of one book.
func checkCart(t *testing.T, after string, s *shopper) {
	t.Helper()
	v, err := s.GetCart(context.Background(), &pb.GetCartRequest{})
	if err != nil || v.Operations != 2 || len(v.Lines) != 1 || v.Lines[0].Quantity != 2 {
		t.Fatalf("after %s, the shopper's cart is %v, %v; want 2 operations, 2 books", after, v, err)
	}
}
