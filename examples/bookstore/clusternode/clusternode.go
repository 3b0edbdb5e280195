// Package clusternode is one node of a bookstore cluster (cluster mode): a
// cluster.Node, and the bookstore gateway it serves to clients with the
// cluster hook, so that the clients' state lives in the cluster. The
// example's "node" subcommand runs one as a daemon; sconelab demo
// --mode=cluster runs several in one process.
package clusternode

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/reflection"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/cluster"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/cli"
	"github.com/scone-project/scone/sconegrpc"
)

// Config says how to start one bookstore node of a cluster.
type Config struct {
	Name       string
	Listen     string // the gateway, for clients
	HTTPListen string // the gateway's HTTP front (shop.HTTPFront), if set
	PeerListen string // the Peer service, for the other nodes
	Gossip     string // memberlist
	Seeds      []string
	K          int
	Degrade    bool
	Sealer     *scone.Sealer
	TLS        *tls.Config // for clients; nil: plaintext
	Memberlist *memberlist.Config
	Logger     *slog.Logger
	Now        func() time.Time // the node's clock (nil: time.Now)

	// PeerAdvertise is where the other nodes reach the Peer service (empty:
	// the address listened on).
	PeerAdvertise string

	// Identity and IdentityHeader name the clients, as in cluster.Config:
	// by default their verified TLS certificates (TLS must then require
	// client certificates); IdentityHeader is safe only behind an
	// authenticating proxy (or on loopback, in tests and the lab).
	Identity       sconegrpc.Identity
	IdentityHeader string

	// PeerTLS, GossipKeys and InsecurePeers secure the links between the
	// nodes, as in cluster.Config.
	PeerTLS       *tls.Config
	GossipKeys    [][]byte
	InsecurePeers bool

	// TracerProvider, if set, traces the node's calls with otelgrpc
	// (shop.Tracing): the gateway's, its back ends', and the cluster
	// hook's spans under them (cluster.Config.TracerProvider).
	TracerProvider trace.TracerProvider
}

// Node is one node of a bookstore cluster: a cluster.Node and the gateway
// it serves to clients with the cluster hook, so the clients' state lives
// in the cluster. The gateway's back ends (cart and inventory) run in the
// same process on loopback with the ordinary hook: their SCONEs travel
// through the gateway as in every mode, and are kept in the cluster with
// the gateway's own.
type Node struct {
	traceServer []grpc.ServerOption // shop.Tracing's, for the back ends
	node        *cluster.Node
	addr        string // the gateway's address
	httpAddr    string // its HTTP front's, if any
	peerAddr    string
	servers     []*grpc.Server
	hsrv        *http.Server // the HTTP front, if any
	closers     []func() error
	served      atomic.Int64 // client calls
}

// Start starts a node: its back ends, its Peer service, gossip, and the
// gateway.
func Start(spec Config) (_ *Node, err error) {
	n := &Node{}
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	traceServer, traceDial := shop.Tracing(spec.TracerProvider)
	n.traceServer = traceServer
	inv, err := n.serveBackend(shop.RoleInventory, spec.Sealer, shop.Backends{})
	if err != nil {
		return nil, err
	}
	invConn, err := shop.DialBackend([]string{inv}, traceDial...)
	if err != nil {
		return nil, err
	}
	n.closers = append(n.closers, invConn.Close)
	cart, err := n.serveBackend(shop.RoleCart, spec.Sealer, shop.Backends{Inventory: pb.NewInventoryClient(invConn)})
	if err != nil {
		return nil, err
	}
	cartConn, err := shop.DialBackend([]string{cart}, traceDial...)
	if err != nil {
		return nil, err
	}
	n.closers = append(n.closers, cartConn.Close)

	peerLis, err := net.Listen("tcp", spec.PeerListen)
	if err != nil {
		return nil, fmt.Errorf("peer address %s: %w", spec.PeerListen, err)
	}
	n.peerAddr = peerLis.Addr().String()
	cfg := cluster.DefaultConfig()
	cfg.Name = spec.Name
	cfg.GossipAddr = spec.Gossip
	cfg.PeerAddr = n.peerAddr
	if spec.PeerAdvertise != "" {
		cfg.PeerAddr = spec.PeerAdvertise
	}
	cfg.Seeds = spec.Seeds
	cfg.K = spec.K
	cfg.Degrade = spec.Degrade
	cfg.Identity, cfg.IdentityHeader = spec.Identity, spec.IdentityHeader
	cfg.PeerTLS, cfg.GossipKeys, cfg.InsecurePeers = spec.PeerTLS, spec.GossipKeys, spec.InsecurePeers
	cfg.Memberlist = spec.Memberlist
	cfg.Logger = spec.Logger
	cfg.Now = spec.Now
	cfg.TracerProvider = spec.TracerProvider
	if n.node, err = cluster.New(cfg); err != nil {
		peerLis.Close()
		return nil, err
	}
	go n.node.ServePeer(peerLis)

	lis, err := cli.ListenRetry(spec.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %s: %w", spec.Listen, err)
	}
	n.addr = lis.Addr().String()
	opts := append(append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(n.count)}, n.node.ServerOptions(spec.Sealer)...), traceServer...)
	if spec.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(spec.TLS)))
	}
	gw := grpc.NewServer(opts...)
	g := &shop.Gateway{Cart: pb.NewCartClient(cartConn), Inventory: pb.NewInventoryClient(invConn)}
	pb.RegisterGatewayServer(gw, g)
	reflection.Register(gw)
	n.servers = append(n.servers, gw)
	go gw.Serve(lis)
	if spec.HTTPListen != "" {
		if err := n.serveHTTP(spec, g); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// serveHTTP serves the gateway's HTTP front, its state kept in the cluster
// by the cluster's HTTP middleware: the same handlers as in client mode.
func (n *Node) serveHTTP(spec Config, g *shop.Gateway) error {
	lis, err := cli.ListenRetry(spec.HTTPListen)
	if err != nil {
		return fmt.Errorf("HTTP address %s: %w", spec.HTTPListen, err)
	}
	n.httpAddr = lis.Addr().String()
	front := shop.HTTPFront(g, n.node.Middleware(spec.Sealer, pb.Gateway_ServiceDesc.ServiceName, shop.HTTPScope))
	n.hsrv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.served.Add(1)
		front.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	if spec.TLS != nil {
		n.hsrv.TLSConfig = spec.TLS.Clone()
		go n.hsrv.ServeTLS(lis, "", "")
	} else {
		go n.hsrv.Serve(lis)
	}
	return nil
}

func (n *Node) count(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	n.served.Add(1)
	return h(ctx, req)
}

// serveBackend serves one back-end role on a loopback port and returns its
// address.
func (n *Node) serveBackend(role shop.Role, sealer *scone.Sealer, b shop.Backends) (string, error) {
	srv, err := shop.NewServer(role, sealer, b, n.traceServer...)
	if err != nil {
		return "", err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	n.servers = append(n.servers, srv)
	go srv.Serve(lis)
	return lis.Addr().String(), nil
}

// Cluster returns the node's cluster.Node.
func (n *Node) Cluster() *cluster.Node { return n.node }

// Addr returns the address of the gateway.
func (n *Node) Addr() string { return n.addr }

// HTTPAddr returns the address of the gateway's HTTP front ("" without
// Config.HTTPListen).
func (n *Node) HTTPAddr() string { return n.httpAddr }

// PeerAddr returns the address of the Peer service.
func (n *Node) PeerAddr() string { return n.peerAddr }

// Served returns how many client calls the gateway has served, over gRPC
// and HTTP.
func (n *Node) Served() int64 { return n.served.Load() }

// Stop stops the node at once, as a crash would for the others.
func (n *Node) Stop() {
	if n.hsrv != nil {
		n.hsrv.Close()
	}
	for _, s := range n.servers {
		s.Stop()
	}
	if n.node != nil {
		n.node.Close()
	}
	for _, c := range n.closers {
		c()
	}
}

// Leave stops the node gracefully: it finishes the calls in flight, hands
// its records over and leaves the cluster.
func (n *Node) Leave() error {
	if n.hsrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n.hsrv.Shutdown(ctx)
		cancel()
	}
	for _, s := range slices.Backward(n.servers) { // the gateway first
		s.GracefulStop()
	}
	err := n.node.Leave(2 * time.Second)
	for _, c := range n.closers {
		c()
	}
	return err
}
