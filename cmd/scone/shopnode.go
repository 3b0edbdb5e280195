package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/reflection"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/cluster"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
)

// nodeSpec says how to start one bookstore node of a cluster.
type nodeSpec struct {
	name       string
	listen     string // the gateway, for clients
	peerListen string // the Peer service, for the other nodes
	gossip     string // memberlist
	seeds      []string
	k          int
	degrade    bool
	identity   string // metadata key naming clients
	sealer     *scone.Sealer
	tls        *tls.Config // for clients; nil: plaintext
	memberlist *memberlist.Config
	log        *slog.Logger
	now        func() time.Time // the node's clock (nil: time.Now)

	// peerAdvertise is where the other nodes reach the Peer service (empty:
	// the address listened on).
	peerAdvertise string
}

// shopNode is one node of a bookstore cluster: a cluster.Node and the
// gateway it serves to clients with the cluster hook, so the clients' state
// lives in the cluster. The gateway's back ends (cart and inventory) run in
// the same process on loopback with the ordinary hook: their SCONEs travel
// through the gateway as in every mode, and are kept in the cluster with
// the gateway's own.
type shopNode struct {
	node     *cluster.Node
	addr     string // the gateway's address
	peerAddr string
	servers  []*grpc.Server
	closers  []func() error
	served   atomic.Int64 // client calls
}

func startShopNode(spec nodeSpec) (_ *shopNode, err error) {
	n := &shopNode{}
	defer func() {
		if err != nil {
			n.stop()
		}
	}()
	inv, err := n.serveBackend(shop.RoleInventory, spec.sealer, shop.Backends{})
	if err != nil {
		return nil, err
	}
	invConn, err := shop.DialBackend([]string{inv})
	if err != nil {
		return nil, err
	}
	n.closers = append(n.closers, invConn.Close)
	cart, err := n.serveBackend(shop.RoleCart, spec.sealer, shop.Backends{Inventory: pb.NewInventoryClient(invConn)})
	if err != nil {
		return nil, err
	}
	cartConn, err := shop.DialBackend([]string{cart})
	if err != nil {
		return nil, err
	}
	n.closers = append(n.closers, cartConn.Close)

	peerLis, err := net.Listen("tcp", spec.peerListen)
	if err != nil {
		return nil, fmt.Errorf("peer address %s: %w", spec.peerListen, err)
	}
	n.peerAddr = peerLis.Addr().String()
	cfg := cluster.DefaultConfig()
	cfg.Name = spec.name
	cfg.GossipAddr = spec.gossip
	cfg.PeerAddr = n.peerAddr
	if spec.peerAdvertise != "" {
		cfg.PeerAddr = spec.peerAdvertise
	}
	cfg.Seeds = spec.seeds
	cfg.K = spec.k
	cfg.Degrade = spec.degrade
	if spec.identity != "" {
		cfg.IdentityKey = spec.identity
	}
	cfg.Memberlist = spec.memberlist
	cfg.Logger = spec.log
	cfg.Now = spec.now
	if n.node, err = cluster.New(cfg); err != nil {
		peerLis.Close()
		return nil, err
	}
	go n.node.ServePeer(peerLis)

	lis, err := listenRetry(spec.listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %s: %w", spec.listen, err)
	}
	n.addr = lis.Addr().String()
	opts := append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(n.count)}, n.node.ServerOptions(spec.sealer)...)
	if spec.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(spec.tls)))
	}
	gw := grpc.NewServer(opts...)
	pb.RegisterGatewayServer(gw, &shop.Gateway{Cart: pb.NewCartClient(cartConn), Inventory: pb.NewInventoryClient(invConn)})
	reflection.Register(gw)
	n.servers = append(n.servers, gw)
	go gw.Serve(lis)
	return n, nil
}

func (n *shopNode) count(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	n.served.Add(1)
	return h(ctx, req)
}

// serveBackend serves one back-end role on a loopback port and returns its
// address.
func (n *shopNode) serveBackend(role shop.Role, sealer *scone.Sealer, b shop.Backends) (string, error) {
	srv, err := shop.NewServer(role, sealer, b)
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

// stop stops the node at once, as a crash would for the others.
func (n *shopNode) stop() {
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

// leave stops the node gracefully: it finishes the calls in flight, hands
// its records over and leaves the cluster.
func (n *shopNode) leave() error {
	for _, s := range slices.Backward(n.servers) { // the gateway first
		s.GracefulStop()
	}
	err := n.node.Leave(2 * time.Second)
	for _, c := range n.closers {
		c()
	}
	return err
}

// listenRetry listens on addr, retrying for up to two seconds while the
// address is in use: a node restarted on its old address may find the port
// still held by a connection of its previous life.
func listenRetry(addr string) (net.Listener, error) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		lis, err := net.Listen("tcp", addr)
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return lis, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}
