package cluster

import (
	"math/rand/v2"
	"time"
)

// Memberlist neither probes a member it has declared dead nor exchanges
// state with it, so the two sides of a healed partition, each having
// declared the other dead, would stay apart for good. A node therefore
// remembers the members it lost and, every RejoinInterval, tries to join one
// of them again (and its seeds, when it is alone), for up to RejoinTimeout
// after the loss. A join exchanges full state: each side learns that the
// other declared it dead, refutes it, and the cluster is whole again within
// a few intervals of the network healing.

// lostMember is a member declared dead (or gone), still worth a try.
type lostMember struct {
	addr  string // gossip address
	since time.Time
}

// memberLost remembers a member that left the live set, at its gossip
// address; n.mu must be held.
func (n *Node) memberLost(name, addr string) {
	if name == n.cfg.Name || addr == "" {
		return
	}
	n.lost[name] = lostMember{addr: addr, since: time.Now()}
	n.m.lost.Set(float64(len(n.lost)))
}

// memberFound forgets a lost member that is live again; n.mu must be held.
func (n *Node) memberFound(name string) {
	delete(n.lost, name)
	n.m.lost.Set(float64(len(n.lost)))
}

// rejoinCandidates returns the gossip addresses worth a join now: the lost
// members lost less than RejoinTimeout ago (older ones are forgotten), and
// the seeds if the node sees no other member.
func (n *Node) rejoinCandidates(now time.Time) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for name, l := range n.lost {
		if now.Sub(l.since) > n.cfg.RejoinTimeout {
			delete(n.lost, name)
			continue
		}
		out = append(out, l.addr)
	}
	n.m.lost.Set(float64(len(n.lost)))
	if len(n.addrs) <= 1 {
		out = append(out, n.cfg.Seeds...)
	}
	return out
}

// rejoinLoop tries, every RejoinInterval, to join one candidate at random.
func (n *Node) rejoinLoop() {
	defer n.done.Done()
	tick := time.NewTicker(n.cfg.RejoinInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
		c := n.rejoinCandidates(time.Now())
		if len(c) == 0 {
			continue
		}
		addr := c[rand.IntN(len(c))]
		if _, err := n.ml.Join([]string{addr}); err != nil {
			n.m.rejoins.WithLabelValues("failed").Inc()
			n.cfg.Logger.Debug("rejoin failed", "node", n.cfg.Name, "addr", addr, "err", err)
			continue
		}
		n.m.rejoins.WithLabelValues("joined").Inc()
		n.cfg.Logger.Info("rejoined", "node", n.cfg.Name, "addr", addr)
	}
}
