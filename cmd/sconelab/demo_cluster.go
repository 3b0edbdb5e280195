package main

import (
	"fmt"
	"sync"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/clusternode"
	"github.com/scone-project/scone/examples/bookstore/shop"
)

// clusterTier is the network of --mode=cluster: bookstore nodes that keep
// the shoppers' SCONEs among themselves, each on k of them.
type clusterTier struct {
	k     int
	nodes []*clusterMember
}

// clusterMember is one node process (here, one shopNode) that can be
// killed and restarted with its name and addresses.
type clusterMember struct {
	spec clusternode.Config
	tier *clusterTier

	mu     sync.Mutex
	n      *clusternode.Node
	served int64 // calls served by the node's earlier lives
}

func startClusterTier(sealer *scone.Sealer, n, k int, overHTTP bool) (_ *clusterTier, err error) {
	t := &clusterTier{k: k}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	// The nodes talk to each other as in production: mutual TLS with a CA
	// of the cluster, and encrypted gossip.
	peers, err := newPeerSecrets()
	if err != nil {
		return nil, err
	}
	var seeds []string
	for i := range n {
		name := fmt.Sprintf("node-%d", i+1)
		peerTLS, err := peers.tls(name)
		if err != nil {
			return nil, err
		}
		spec := clusternode.Config{
			Name: name, Listen: "127.0.0.1:0", PeerListen: "127.0.0.1:0",
			Gossip: "127.0.0.1:0", Seeds: seeds, K: k, Sealer: sealer,
			// The shoppers name themselves in a header on 127.0.0.1, as
			// behind an authenticating proxy.
			IdentityHeader: "scone-client",
			PeerTLS:        peerTLS, GossipKeys: peers.gossipKeys(),
		}
		if overHTTP {
			spec.HTTPListen = "127.0.0.1:0"
		}
		m := &clusterMember{spec: spec, tier: t}
		if m.n, err = clusternode.Start(spec); err != nil {
			return nil, err
		}
		// Restarts keep the clients' address (the gateway); the peer and
		// gossip ports are new each time, as the others learn them by
		// gossip: a port given up may be taken by then.
		m.spec.Listen, m.spec.Gossip = m.n.Addr(), m.n.Cluster().GossipAddr()
		if overHTTP {
			m.spec.HTTPListen = m.n.HTTPAddr()
		}
		t.nodes = append(t.nodes, m)
		seeds = append(seeds, m.spec.Gossip)
	}
	return t, nil
}

func (t *clusterTier) addrs() []string {
	var out []string
	for _, m := range t.nodes {
		out = append(out, m.spec.Listen)
	}
	return out
}

// settled reports whether every node is up, sees all the others, and has
// finished repair: only then may the nemesis kill one, so that no two
// nodes are ever down before their records were copied (k=2 survives one
// failure at a time).
func (t *clusterTier) settled() bool {
	for _, m := range t.nodes {
		n := m.get()
		if n == nil || len(n.Cluster().Members()) != len(t.nodes) || !n.Cluster().Settled() {
			return false
		}
	}
	return true
}

// records returns the records (copies) the nodes hold, and the clients
// they are of (copies / k when settled).
func (t *clusterTier) records() int {
	total := 0
	for _, m := range t.nodes {
		if n := m.get(); n != nil {
			total += n.Cluster().Records()
		}
	}
	return total
}

func (t *clusterTier) close() {
	for _, m := range t.nodes {
		m.kill()
	}
}

// member returns the node named name, or nil.
func (t *clusterTier) member(name string) *clusterMember {
	for _, m := range t.nodes {
		if m.spec.Name == name {
			return m
		}
	}
	return nil
}

func (m *clusterMember) get() *clusternode.Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

func (m *clusterMember) up() bool { return m.get() != nil }

// calls returns how many client calls the node served, over its lives.
func (m *clusterMember) calls() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n != nil {
		return m.served + m.n.Served()
	}
	return m.served
}

// kill stops the node at once: its records are gone with it.
func (m *clusterMember) kill() {
	m.mu.Lock()
	n := m.n
	m.n = nil
	if n != nil {
		m.served += n.Served()
	}
	m.mu.Unlock()
	if n != nil {
		n.Stop()
	}
}

// restart starts the node again, empty, on its addresses: it joins the
// others, and placement moves copies to it.
func (m *clusterMember) restart() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n != nil {
		return shop.ErrUp
	}
	spec := m.spec
	spec.Seeds = nil
	for _, o := range m.tier.nodes {
		if o != m && o.up() {
			spec.Seeds = append(spec.Seeds, o.gossipAddr())
		}
	}
	n, err := clusternode.Start(spec)
	if err != nil {
		return err
	}
	m.n = n
	m.spec.Gossip = n.Cluster().GossipAddr()
	return nil
}

// gossipAddr returns where the node gossips now.
func (m *clusterMember) gossipAddr() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.spec.Gossip
}

// startCluster starts the nodes of --mode=cluster and returns how shoppers
// reach them: plain gRPC clients, round-robin over the nodes.
func (d *demo) startCluster(sealer *scone.Sealer) (shopper, error) {
	cfg := d.cfg
	overHTTP := cfg.transport == "http"
	t, err := startClusterTier(sealer, cfg.nodes, cfg.k, overHTTP)
	if err != nil {
		return nil, err
	}
	d.cluster = t
	d.onClose(t.close)
	var g []victim
	for _, m := range t.nodes {
		g = append(g, victim{m.spec.Name, m.spec.Listen, m.up, m.kill, m.restart})
		gateway := m.spec.Listen
		if overHTTP {
			gateway += " (HTTP " + m.spec.HTTPListen + ")"
		}
		d.narrate("%-9s %s: gateway on %s, peers on %s, gossip on %s (cart and inventory inside, on loopback)",
			"node", m.spec.Name, gateway, m.get().PeerAddr(), m.spec.Gossip)
	}
	d.groups = append(d.groups, g)
	d.narrate("%d nodes in one cluster (hashicorp/memberlist gossip); every session's SCONEs (gateway,", cfg.nodes)
	d.narrate("cart and inventory) are kept on k=%d of them, written to all %d before each reply: the", cfg.k, cfg.k)
	d.narrate("shoppers have no SCONE code, only a scone-client header naming them; the nodes talk to each")
	d.narrate("other over mutual TLS (a CA of the cluster) and gossip encrypted with a shared key")
	if overHTTP {
		var targets []httpTarget
		for _, m := range t.nodes {
			targets = append(targets, httpTarget{m.spec.Name, m.spec.HTTPListen})
		}
		d.narrate("the shoppers talk HTTP/JSON to the nodes' HTTP fronts: the same handlers as in client mode,")
		d.narrate("their state kept by the cluster's HTTP middleware; a plain HTTP client, no cookies, no Scone headers")
		return newHTTPShopper(targets, false), nil
	}
	conn, err := shop.DialReplicas(t.addrs()) // a plain gRPC client: no hook
	if err != nil {
		return nil, err
	}
	d.onClose(func() { conn.Close() })
	return &grpcShopper{gw: pb.NewGatewayClient(conn), names: d.addrNames()}, nil
}
