package circulate_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/circulate"
	"github.com/scone-project/scone/cluster"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/internal/memnet"
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
	c, ok, err := cartState.Load(ctx)
	if !ok {
		return &pb.CartContents{}, err
	}
	return c, nil
}

// A group of relays keeps the clients' SCONEs in circulation: each client's
// SCONEs are on two relays at a time, and the relay a request reaches finds
// them by asking the others. The client is a plain gRPC client, named by the
// "scone-client" header (or its TLS certificate).
//
// Here relay-0 carries a call and then fails; relay-1 carries the next ones,
// with the state. Until the others have noticed the failure and handed the
// copies on (about a second), a relay cannot find the state, or finds that
// its primary holder left: the call fails Unavailable, having changed
// nothing, and is retried.
func Example() {
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring)
	if err != nil {
		log.Fatal(err)
	}

	// The service, with the server hook, on an in-memory network.
	lan := memnet.New()
	svc := grpc.NewServer(sconegrpc.ServerOptions(sealer)...)
	pb.RegisterCartServer(svc, cart{})
	go svc.Serve(lan.Listen("cart", "cart:50051"))
	defer svc.Stop()

	// Three relays in front of it, forming a group.
	var seeds []string
	relays := map[string]*relay.Server{}
	stores := map[string]*circulate.Store{}
	for _, name := range []string{"relay-0", "relay-1", "relay-2"} {
		cfg := circulate.DefaultConfig()
		cfg.Name, cfg.PeerAddr, cfg.Seeds = name, "peer-"+name, seeds
		cfg.Memberlist = cluster.LANConfig()
		cfg.Memberlist.Transport, cfg.Dial = lan.Transport(name), lan.Dialer(name) // default: TCP and UDP

		store, err := circulate.New(cfg) // 1. join the group
		if err != nil {
			log.Fatal(err)
		}
		defer store.Close()
		go store.ServePeer(lan.Listen(name, cfg.PeerAddr)) // 2. serve the other relays

		rcfg := relay.DefaultConfig()
		rcfg.Upstreams, rcfg.Store = []string{"cart:50051"}, store // 3. a relay with the store
		rcfg.Dial = lan.Dialer(name)
		rcfg.IdentityHeader = "scone-client" // only behind an authenticating proxy
		r, err := relay.New(rcfg)
		if err != nil {
			log.Fatal(err)
		}
		go r.Serve(lan.Listen(name, name+":50051"))
		defer r.Stop()

		relays[name], stores[name] = r, store
		seeds = append(seeds, store.GossipAddr())
	}

	// The client: plain gRPC, through any relay.
	conn0, conn1 := dial(lan, "relay-0:50051"), dial(lan, "relay-1:50051")
	defer conn0.Close()
	defer conn1.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "scone-client", "bob")

	c := retry(func() (*pb.CartContents, error) {
		return pb.NewCartClient(conn0).Add(ctx, &pb.CartChange{Isbn: "9780441013593", Quantity: 1})
	})
	fmt.Println("through relay-0:", len(c.Items), "item")

	relays["relay-0"].Stop()
	stores["relay-0"].Close() // relay-0 fails, its copies with it

	c = retry(func() (*pb.CartContents, error) {
		return pb.NewCartClient(conn1).Get(ctx, &pb.CartGet{})
	})
	fmt.Println("through relay-1:", len(c.Items), "item")
	c = retry(func() (*pb.CartContents, error) {
		return pb.NewCartClient(conn1).Add(ctx, &pb.CartChange{Isbn: "9780441569595", Quantity: 2})
	})
	fmt.Println("through relay-1:", len(c.Items), "items")
	// Output:
	// through relay-0: 1 item
	// through relay-1: 1 item
	// through relay-1: 2 items
}

// dial connects to addr on lan.
func dial(lan *memnet.Net, addr string) *grpc.ClientConn {
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(lan.Dialer("client")))
	if err != nil {
		log.Fatal(err)
	}
	return conn
}

// retry calls f again while it fails with Unavailable, with which a relay
// refuses a call, changing nothing, while the group settles after a relay
// joins or fails.
func retry[T any](f func() (T, error)) T {
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := f()
		code := status.Code(err)
		switch {
		case code == codes.OK:
			return v
		case code == codes.Unavailable:
			if time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		log.Fatal(err)
	}
}
