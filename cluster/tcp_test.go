package cluster

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scone-project/scone"
)

// tcpCluster is a cluster of Nodes in this process on loopback TCP and UDP
// (real memberlist transport, real gRPC), serving the counter service.
type tcpCluster struct {
	tb     testing.TB
	k      int
	sealer *scone.Sealer
	nodes  []*tcpNode
	// peerTLS, if set, gives each node its PeerTLS; gossipKeys are every
	// node's GossipKeys.
	peerTLS    func(name string) *tls.Config
	gossipKeys [][]byte
}

// tcpNode is one node; kill and restart keep its name and addresses.
type tcpNode struct {
	name, gossip, peer, svc string
	node                    *Node
	srv                     *grpc.Server
	conn                    *grpc.ClientConn // the clients' connection to it
}

func newTCPCluster(tb testing.TB, n, k int) *tcpCluster {
	return startTCPCluster(&tcpCluster{tb: tb, k: k, sealer: testSealer(tb)}, n)
}

// startTCPCluster starts the n nodes of c.
func startTCPCluster(c *tcpCluster, n int) *tcpCluster {
	tb := c.tb
	tb.Cleanup(c.close)
	for i := range n {
		tn := &tcpNode{name: fmt.Sprintf("node-%d", i), gossip: "127.0.0.1:0", peer: "127.0.0.1:0", svc: "127.0.0.1:0"}
		c.nodes = append(c.nodes, tn)
		c.start(tn)
		conn, err := grpc.NewClient(tn.svc, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			tb.Fatal(err)
		}
		tn.conn = conn
	}
	c.waitMembers(n)
	return c
}

func (c *tcpCluster) start(tn *tcpNode) {
	c.tb.Helper()
	peerLis := c.listen(tn.peer)
	svcLis := c.listen(tn.svc)
	if tn.conn != nil && svcLis.Addr().String() != tn.svc {
		// The service moved (see listen): the clients' connection follows.
		tn.conn.Close()
		conn, err := grpc.NewClient(svcLis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.tb.Fatal(err)
		}
		tn.conn = conn
	}
	var err error
	cfg := DefaultConfig()
	cfg.Name, cfg.GossipAddr, cfg.PeerAddr, cfg.K = tn.name, tn.gossip, peerLis.Addr().String(), c.k
	cfg.IdentityHeader = "scone-client"
	cfg.GossipKeys = c.gossipKeys
	if c.peerTLS != nil {
		cfg.PeerTLS = c.peerTLS(tn.name)
	}
	for _, o := range c.nodes {
		if o != tn && o.node != nil {
			cfg.Seeds = append(cfg.Seeds, o.gossip)
		}
	}
	tn.node, err = New(cfg)
	if err != nil && cfg.GossipAddr != "127.0.0.1:0" && strings.Contains(err.Error(), "address already in use") {
		c.tb.Logf("gossip address %s is taken (%v): a fresh port", cfg.GossipAddr, err) // as in listen
		cfg.GossipAddr = "127.0.0.1:0"
		tn.node, err = New(cfg)
	}
	if err != nil {
		c.tb.Fatal(err)
	}
	go tn.node.ServePeer(peerLis)
	tn.srv = grpc.NewServer(tn.node.ServerOptions(c.sealer)...)
	tn.srv.RegisterService(counterDesc, &counter{})
	go tn.srv.Serve(svcLis)
	tn.gossip, tn.peer, tn.svc = tn.node.GossipAddr(), cfg.PeerAddr, svcLis.Addr().String()
}

// listen listens on addr, a restarted node's old address if it has one.
// The kernel does not reserve a closed port: on a busy machine another
// socket (often the local end of some test's connection) may hold it by the
// time the node restarts, so the node then takes a fresh port, as a
// restarted server on another port would; the cluster learns the new
// addresses through gossip.
func (c *tcpCluster) listen(addr string) net.Listener {
	c.tb.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil && addr != "127.0.0.1:0" {
		c.tb.Logf("%s is taken (%v): listening on a fresh port", addr, err)
		lis, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		c.tb.Fatal(err)
	}
	return lis
}

// kill stops a node at once.
func (c *tcpCluster) kill(tn *tcpNode) {
	tn.srv.Stop()
	tn.node.Close()
	tn.node = nil
}

func (c *tcpCluster) live() []*tcpNode {
	var out []*tcpNode
	for _, tn := range c.nodes {
		if tn.node != nil {
			out = append(out, tn)
		}
	}
	return out
}

// waitMembers waits until every live node sees n members and has finished
// repair.
func (c *tcpCluster) waitMembers(n int) {
	c.tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, tn := range c.live() {
		for len(tn.node.Members()) != n || !tn.node.Settled() {
			if time.Now().After(deadline) {
				c.tb.Fatalf("%s sees %d members, want %d", tn.name, len(tn.node.Members()), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func (c *tcpCluster) close() {
	for _, tn := range c.nodes {
		if tn.conn != nil {
			tn.conn.Close()
		}
		if tn.node != nil {
			c.kill(tn)
		}
	}
}
