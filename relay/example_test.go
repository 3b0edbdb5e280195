package relay_test

import (
	"context"
	"fmt"
	"log"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/relay"
	"github.com/scone-project/scone/sconegrpc"
)

// cart is an ordinary gRPC service whose per-client state, the cart, lives
// in a SCONE. The handler is the same whoever holds the SCONE.
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

func (cart) Get(ctx context.Context, _ *pb.CartGet) (*pb.CartContents, error) {
	c, _, err := cartState.Load(ctx)
	if c == nil {
		c = &pb.CartContents{}
	}
	return c, err
}

// A relay in front of the servers holds each client's SCONEs: the client is
// a plain gRPC client, with no SCONE code. The relay names it by what it
// proves: here a bearer token that the relay's Identity function verifies
// (in production, with your auth library; by default, the SPIFFE ID of a
// verified client certificate). Its cart, added to on replica A, is there
// on replica B once A has stopped, because the relay attached the SCONE. A
// caller that only claims to be alice gets none of it.
func Example() {
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring)
	if err != nil {
		log.Fatal(err)
	}

	// Two replicas of the service, each with the server hook. The relay
	// reaches them at one address, served by A, then by B.
	a, b := newReplica(sealer), newReplica(sealer)
	defer a.Stop()
	defer b.Stop()
	var upstream atomic.Pointer[bufconn.Listener]
	upstream.Store(a.lis)

	// The relay: its Store keeps the SCONEs.
	store := relay.NewMemoryStore(relay.DefaultMemoryConfig())
	defer store.Close()
	cfg := relay.DefaultConfig()
	cfg.Upstreams = []string{"cart.internal:50051"}
	cfg.Store = store
	cfg.Dial = func(ctx context.Context, _ string) (net.Conn, error) { return upstream.Load().DialContext(ctx) }
	users := map[string]string{"Bearer s3cret-alice": "alice"} // stands for your token check
	cfg.Identity = func(ctx context.Context) (string, error) {
		v := metadata.ValueFromIncomingContext(ctx, "authorization")
		if len(v) == 0 {
			return "", nil // no identity: the relay holds nothing for the call
		}
		user, ok := users[v[0]]
		if !ok {
			return "", scone.NewError(scone.CodeWrongClient, "the bearer token does not verify")
		}
		return "user:" + user, nil
	}
	r, err := relay.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	relayLis := bufconn.Listen(1 << 20)
	go r.Serve(relayLis)
	defer r.Stop()

	// The client: plain gRPC, through the relay.
	conn, err := grpc.NewClient("passthrough:///relay",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return relayLis.DialContext(ctx) }))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := pb.NewCartClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer s3cret-alice")

	c, err := client.Add(ctx, &pb.CartChange{Isbn: "9780441013593", Quantity: 1})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("replica A:", len(c.Items), "item")
	clients, scones := store.Len()
	fmt.Println("the relay holds", scones, "SCONE for", clients, "client")

	upstream.Store(b.lis)
	a.GracefulStop() // replica A is gone; the relay reconnects, to B

	c, err = client.Add(ctx, &pb.CartChange{Isbn: "9780441569595", Quantity: 2})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("replica B:", len(c.Items), "items")

	impostor := metadata.AppendToOutgoingContext(context.Background(), "scone-client", "alice", "user", "alice")
	c, err = client.Get(impostor, &pb.CartGet{})
	fmt.Println("a caller claiming to be alice:", len(c.GetItems()), "items", err)
	// Output:
	// replica A: 1 item
	// the relay holds 1 SCONE for 1 client
	// replica B: 2 items
	// a caller claiming to be alice: 0 items <nil>
}

// replica is a server of the cart service with the sconegrpc server hook,
// on an in-memory listener.
type replica struct {
	*grpc.Server
	lis *bufconn.Listener
}

func newReplica(sealer *scone.Sealer) replica {
	srv := grpc.NewServer(sconegrpc.ServerOptions(sealer)...)
	pb.RegisterCartServer(srv, cart{})
	lis := bufconn.Listen(1 << 20)
	go srv.Serve(lis)
	return replica{srv, lis}
}
