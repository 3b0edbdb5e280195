package cluster

// rejoin tries to join one of the members this node lost, or its seeds when
// it is alone (see package internal/rejoin), counting the outcome.
func (n *Node) rejoin(addr string) {
	if _, err := n.ml.Join([]string{addr}); err != nil {
		n.m.rejoins.WithLabelValues("failed").Inc()
		n.cfg.Logger.Debug("rejoin failed", "node", n.cfg.Name, "addr", addr, "err", err)
		return
	}
	n.m.rejoins.WithLabelValues("joined").Inc()
	n.cfg.Logger.Info("rejoined", "node", n.cfg.Name, "addr", addr)
}

// alone reports whether the node sees no other member.
func (n *Node) alone() bool { return len(n.view.Load().members) <= 1 }
