package bench

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/scone-project/scone/cluster"
)

// clusterNodes and clusterK are the shape of the cluster contender: four
// nodes (as in sconelab demo --mode=cluster), each session kept on two.
const (
	clusterNodes = 4
	clusterK     = 2
)

// startClusterK2 starts a cluster of four nodes on loopback (memberlist on
// UDP and TCP, the Peer protocol and the Sessions service on gRPC), keeping
// each session's SCONE on k=2 of them; callers spread over the four and
// name themselves in the identity header.
func startClusterK2(ctx context.Context) (*running, error) {
	r := &running{session: identitySession}
	sealer, err := newSealer()
	if err != nil {
		return nil, err
	}
	var nodes []*cluster.Node
	var seeds []string
	for i := range clusterNodes {
		peerLis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(r, err)
		}
		cfg := cluster.DefaultConfig()
		cfg.Name = fmt.Sprintf("node-%d", i+1)
		cfg.GossipAddr, cfg.PeerAddr, cfg.Seeds, cfg.K = "127.0.0.1:0", peerLis.Addr().String(), seeds, clusterK
		cfg.IdentityHeader = identityKey // callers name themselves on 127.0.0.1, as behind an authenticating proxy
		n, err := cluster.New(cfg)
		if err != nil {
			peerLis.Close()
			return fail(r, fmt.Errorf("cluster node %s: %w", cfg.Name, err))
		}
		r.onClose(n.Close)
		go n.ServePeer(peerLis)
		nodes = append(nodes, n)
		seeds = append(seeds, n.GossipAddr())
		addr, err := serve(r, sconeKeeper{}, false, n.ServerOptions(sealer)...)
		if err != nil {
			return fail(r, err)
		}
		if err := dial(r, addr); err != nil {
			return fail(r, err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range nodes {
		for len(n.Members()) != clusterNodes || !n.Settled() {
			if ctx.Err() != nil {
				return fail(r, ctx.Err())
			}
			if time.Now().After(deadline) {
				return fail(r, fmt.Errorf("cluster node %s sees %d of %d members after 30s", n.Name(), len(n.Members()), clusterNodes))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return r, nil
}
