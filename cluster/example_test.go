package cluster_test

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
	"github.com/scone-project/scone/cluster"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/internal/memnet"
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

// The nodes of a cluster hold the clients' SCONEs: before a call returns,
// the client's new state is on K nodes, so any node can serve the client's
// next call, and up to K-1 of them can fail. The client is a plain gRPC
// client, named here by the "scone-client" header (Config.IdentityHeader,
// safe only behind an authenticating proxy); by default, by its TLS client
// certificate.
//
// Here node-0 serves a call of bob, whose state goes to node-0 and node-2,
// and then fails. node-1, which never held bob's state, serves his next
// call from node-2's copy. Until the others have noticed the failure (under
// a second), calls that need node-0 fail with Unavailable, and the client
// retries them.
func Example() {
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring)
	if err != nil {
		log.Fatal(err)
	}

	// Three nodes, on an in-memory network; each client's state is on two.
	lan := memnet.New()
	var seeds []string
	servers := map[string]*grpc.Server{}
	nodes := map[string]*cluster.Node{}
	for _, name := range []string{"node-0", "node-1", "node-2"} {
		cfg := cluster.DefaultConfig()
		cfg.Name, cfg.PeerAddr, cfg.Seeds, cfg.K = name, "peer-"+name, seeds, 2
		cfg.IdentityHeader = "scone-client" // clients name themselves: only behind an authenticating proxy
		cfg.Memberlist = cluster.LANConfig()
		cfg.Memberlist.Transport, cfg.Dial = lan.Transport(name), lan.Dialer(name) // default: TCP and UDP

		node, err := cluster.New(cfg) // 1. join the cluster
		if err != nil {
			log.Fatal(err)
		}
		defer node.Close()
		go node.ServePeer(lan.Listen(name, cfg.PeerAddr)) // 2. serve the other nodes

		srv := grpc.NewServer(node.ServerOptions(sealer)...) // 3. the cluster hook
		pb.RegisterCartServer(srv, cart{})
		go srv.Serve(lan.Listen(name, "svc-"+name))
		defer srv.Stop()

		nodes[name], servers[name] = node, srv
		seeds = append(seeds, node.GossipAddr())
	}

	// The client: plain gRPC, to any node.
	conn0, conn1 := dial(lan, "node-0"), dial(lan, "node-1")
	defer conn0.Close()
	defer conn1.Close()
	ctx := metadata.AppendToOutgoingContext(context.Background(), "scone-client", "bob")

	c := retry(func() (*pb.CartContents, error) {
		return pb.NewCartClient(conn0).Add(ctx, &pb.CartChange{Isbn: "9780441013593", Quantity: 1})
	})
	fmt.Println("node-0:", len(c.Items), "item")

	servers["node-0"].Stop()
	nodes["node-0"].Close() // node-0 fails, its copies with it

	c = retry(func() (*pb.CartContents, error) {
		return pb.NewCartClient(conn1).Add(ctx, &pb.CartChange{Isbn: "9780441569595", Quantity: 2})
	})
	fmt.Println("node-1:", len(c.Items), "items")
	// Output:
	// node-0: 1 item
	// node-1: 2 items
}

// dial connects to the service of a node on lan.
func dial(lan *memnet.Net, node string) *grpc.ClientConn {
	conn, err := grpc.NewClient("passthrough:///svc-"+node,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(lan.Dialer("client")))
	if err != nil {
		log.Fatal(err)
	}
	return conn
}

// retry calls f again while it fails with Unavailable or Aborted, the codes
// with which a node refuses a call, changing nothing, while the cluster
// settles after members join or fail, or when another call of the client
// changed its state first. Clients of a cluster retry them.
func retry[T any](f func() (T, error)) T {
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := f()
		switch status.Code(err) {
		case codes.OK:
			return v
		case codes.Unavailable, codes.Aborted:
			if time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
		}
		log.Fatal(err)
	}
}
