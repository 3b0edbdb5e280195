package relay_test

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/relay"
)

// dyingGateway serves the bookstore's gateway on 127.0.0.1 until its first
// call of method. A unary call is served in full (the cart tier has sealed
// its new SCONE), then the server stops before replying, as a process
// killed mid-call; a stream, before it sends anything. died is closed
// when it has stopped.
func dyingGateway(t *testing.T, b shop.Backends, method string) (addr string, died <-chan struct{}) {
	t.Helper()
	var (
		srv  *grpc.Server
		once sync.Once
		done = make(chan struct{})
	)
	die := func(ctx context.Context) error {
		once.Do(func() { go func() { srv.Stop(); close(done) }() })
		<-ctx.Done() // the reply never goes out
		return ctx.Err()
	}
	unary := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod != method {
			return h(ctx, req)
		}
		if _, err := h(ctx, req); err != nil {
			return nil, err
		}
		return nil, die(ctx)
	}
	stream := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod != method {
			return h(srv, ss)
		}
		return die(ss.Context())
	}
	srv, err := shop.NewServer(shop.RoleGateway, newSealer(t, sharedRing), b, grpc.ChainUnaryInterceptor(unary), grpc.ChainStreamInterceptor(stream))
	if err != nil {
		t.Fatal(err)
	}
	return serveGateway(t, srv), done
}

func serveGateway(t *testing.T, srv *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// sharedRing is the key ring of every tier in the retry tests.
var sharedRing = func() *scone.KeyRing {
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		panic(err)
	}
	return ring
}()

// TestRelayRetriesLostCall: an upstream dies in the middle of an AddItem,
// after the cart tier applied the change and sealed its new SCONE. With
// the gateway listed in RetryMethods, the relay re-sends the call with the
// same SCONEs to the other upstream, the client sees it succeed, and the
// change is applied once: the lost attempt's SCONEs reached no holder.
// Without it the client sees Unavailable, and its session is as before the
// call.
func TestRelayRetriesLostCall(t *testing.T) {
	for _, tc := range []struct {
		name  string
		retry []string
	}{
		{"retried", []string{"/bookstore.v1.Gateway/"}},
		{"retried by method", []string{pb.Gateway_AddItem_FullMethodName}},
		{"not retried", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := shop.Deploy(newSealer(t, sharedRing), 1)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			dying, died := dyingGateway(t, d.Backends(), pb.Gateway_AddItem_FullMethodName)
			live, err := shop.NewServer(shop.RoleGateway, newSealer(t, sharedRing), d.Backends())
			if err != nil {
				t.Fatal(err)
			}
			cfg := relayConfig([]string{dying, serveGateway(t, live)}, nil)
			cfg.RetryMethods = tc.retry
			r, addr := startRelay(t, cfg)
			gw, ctx := plainGateway(t, addr, "alice")

			var acked, lost uint64
			for i := 0; ; i++ {
				if i == 20 {
					t.Fatal("20 calls, none of them reached the dying upstream")
				}
				v, err := gw.AddItem(ctx, &pb.AddItemRequest{Isbn: shop.Catalog[i%len(shop.Catalog)].Isbn, Quantity: 1})
				switch {
				case err == nil:
					acked++
					if v.Operations != acked || copies(v) != acked {
						t.Fatalf("after %d acknowledged adds: %d operations, %d copies", acked, v.Operations, copies(v))
					}
				case status.Code(err) == codes.Unavailable && tc.retry == nil:
					lost++
				default:
					t.Fatalf("call %d: %v", i, err)
				}
				select {
				case <-died:
				default:
					continue
				}
				break
			}
			v, err := gw.GetCart(ctx, &pb.GetCartRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if v.Operations != acked || copies(v) != acked {
				t.Errorf("after %d acknowledged adds: the cart has %d operations, %d copies", acked, v.Operations, copies(v))
			}
			answered := retriesOf(t, r, "answered")
			if tc.retry != nil && (answered != 1 || lost != 0) {
				t.Errorf("retried: %v re-sends answered, %d calls lost; want 1 and 0", answered, lost)
			}
			if tc.retry == nil && (answered != 0 || lost != 1) {
				t.Errorf("not retried: %v re-sends answered, %d calls lost; want 0 and 1", answered, lost)
			}
		})
	}
}

// retriesOf returns the relay's count of re-sends of this outcome.
func retriesOf(t *testing.T, r *relay.Server, outcome string) float64 {
	t.Helper()
	mfs, err := r.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "scone_relay_retries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// copies counts the books in a cart.
func copies(v *pb.CartView) uint64 {
	var n uint64
	for _, l := range v.Lines {
		n += uint64(l.Quantity)
	}
	return n
}

// TestRelayRetriesLostStream: a stream an upstream loses before sending
// anything is re-sent to the other upstream, and the client reads the
// whole stream once.
func TestRelayRetriesLostStream(t *testing.T) {
	d, err := shop.Deploy(newSealer(t, sharedRing), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	dying, died := dyingGateway(t, d.Backends(), pb.Gateway_ListItems_FullMethodName)
	live, err := shop.NewServer(shop.RoleGateway, newSealer(t, sharedRing), d.Backends())
	if err != nil {
		t.Fatal(err)
	}
	cfg := relayConfig([]string{dying, serveGateway(t, live)}, nil)
	cfg.RetryMethods = []string{"/bookstore.v1.Gateway/"}
	r, addr := startRelay(t, cfg)
	gw, ctx := plainGateway(t, addr, "alice")
	for _, isbn := range []string{dune, neuromancer} {
		if _, err := gw.AddItem(ctx, &pb.AddItemRequest{Isbn: isbn, Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; ; i++ {
		if i == 20 {
			t.Fatal("20 streams, none of them reached the dying upstream")
		}
		stream, err := gw.ListItems(ctx, &pb.GetCartRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var lines int
		for {
			_, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("stream %d, after %d lines: %v", i+1, lines, err)
			}
			lines++
		}
		if lines != 2 {
			t.Fatalf("stream %d: %d lines, want 2", i+1, lines)
		}
		select {
		case <-died:
		default:
			continue
		}
		break
	}
	if n := retriesOf(t, r, "answered"); n != 1 {
		t.Errorf("%v re-sends answered, want 1", n)
	}
}
