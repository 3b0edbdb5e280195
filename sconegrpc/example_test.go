package sconegrpc_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/sconegrpc"
)

// cart is an ordinary gRPC service whose per-client state, the cart, lives
// in a SCONE: its handlers read and write it through a scone.Typed view and
// keep nothing in memory.
type cart struct{ pb.UnimplementedCartServer }

var cartState = scone.NewTyped(scone.ProtoCodec[*pb.CartContents]())

func (cart) Add(ctx context.Context, req *pb.CartChange) (*pb.CartContents, error) {
	c, _, err := cartState.Load(ctx)
	if err != nil {
		return nil, err
	}
	if c == nil {
		c = &pb.CartContents{} // the client's first call
	}
	c.Items = append(c.Items, &pb.Item{Isbn: req.Isbn, Quantity: req.Quantity})
	return c, cartState.Store(ctx, c)
}

// The three lines of the integration: a Sealer with the service's keys,
// ServerOptions on every replica, DialOptions on the client. The client's
// cart, added to on replica A, is there on replica B once A has stopped.
func Example() {
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring) // 1. the replicas share the key ring
	if err != nil {
		log.Fatal(err)
	}

	// Two replicas of the service, each with the server hook.
	var replicas [2]*grpc.Server
	var listeners [2]*bufconn.Listener
	for i := range replicas {
		replicas[i] = grpc.NewServer(sconegrpc.ServerOptions(sealer)...) // 2. the server hook
		pb.RegisterCartServer(replicas[i], cart{})
		listeners[i] = serve(replicas[i])
		defer replicas[i].Stop()
	}

	// The client, with the client hook: its holder keeps the SCONEs.
	holder := scone.NewDict()
	hook := sconegrpc.DialOptions(sconegrpc.WithHolder(holder)) // 3. the client hook

	ctx := context.Background()
	connA := dial(listeners[0], hook...)
	c, err := pb.NewCartClient(connA).Add(ctx, &pb.CartChange{Isbn: "9780441013593", Quantity: 1})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("replica A:", len(c.Items), "item")
	connA.Close()
	replicas[0].Stop() // replica A is gone

	connB := dial(listeners[1], hook...)
	defer connB.Close()
	c, err = pb.NewCartClient(connB).Add(ctx, &pb.CartChange{Isbn: "9780441569595", Quantity: 2})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("replica B:", len(c.Items), "items")

	// The client holds one SCONE; it sees only the cleartext header.
	for _, h := range holder.Headers() {
		fmt.Println("held:", h.Service, h.Scope, "version", h.Version)
	}
	// Output:
	// replica A: 1 item
	// replica B: 2 items
	// held: bookstore.v1.Cart /bookstore.v1.Cart/ version 2
}

// serve serves srv on an in-memory listener; in production, a TCP one.
func serve(srv *grpc.Server) *bufconn.Listener {
	lis := bufconn.Listen(1 << 20)
	go srv.Serve(lis)
	return lis
}

// dial connects to an in-memory listener with opts.
func dial(lis *bufconn.Listener, opts ...grpc.DialOption) *grpc.ClientConn {
	opts = append(opts,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))
	conn, err := grpc.NewClient("passthrough:///cart", opts...)
	if err != nil {
		log.Fatal(err)
	}
	return conn
}
