package main

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// deployChaosCirculate: the bookstore's tiers, and three relays that keep
// no SCONEs but circulate them among themselves (scone relay --circulate,
// two copies); the sessions have no SCONE code.
func deployChaosCirculate(r *chaosRun) error {
	gwNames, gwAddrs, err := r.deployShop()
	if err != nil {
		return err
	}
	var relays []*chaosProc
	for i := range max(3, r.cfg.replicas) {
		name := fmt.Sprintf("relay-%d", i+1)
		var addrs [4]string
		for j := range addrs {
			if addrs[j], err = freeAddr(); err != nil {
				return err
			}
		}
		listen, admin, g, peer := addrs[0], addrs[1], addrs[2], addrs[3]
		r.gossip[name] = g
		r.gossipCuttable(name)
		var ups []string
		for j, a := range gwAddrs {
			p, err := r.link(name, gwNames[j], a)
			if err != nil {
				return err
			}
			ups = append(ups, p)
		}
		env, err := r.skewable(name)
		if err != nil {
			return err
		}
		secure, err := r.peerArgs(name)
		if err != nil {
			return err
		}
		p := &chaosProc{name: name, bin: r.bins.scone, env: env, ready: dialReady(listen)}
		p.args = func() []string {
			seeds := r.liveGossip(relays, p)
			args := []string{"relay", "--circulate", "--name=" + name, "--listen=" + listen, "--admin=" + admin,
				"--gossip=" + g, "--peer-listen=" + peer, "--upstream=" + strings.Join(ups, ","),
				"--identity-header=scone-client"} // sessions name themselves on 127.0.0.1, as behind an authenticating proxy
			args = append(args, secure...)
			if len(seeds) > 0 {
				args = append(args, "--seeds="+strings.Join(seeds, ","))
			}
			return args
		}
		relays = append(relays, p)
		if err := r.addMember(p, admin, listen); err != nil {
			return err
		}
	}
	return settleCirculate(context.Background(), r, 30*time.Second)
}

// settleCirculate waits until every relay is up and sees all the others,
// and the relays hold at least two copies of the state of every session
// that changed its cart: only then can one more relay fail with nothing
// lost.
func settleCirculate(ctx context.Context, r *chaosRun, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		var why error
		copies := 0.0
		for _, n := range r.nodes {
			members := metric(n.admin, "scone_circulate_members")
			if !r.byName[n.name].up() || members != float64(len(r.nodes)) {
				why = fmt.Errorf("%s: up %v, %v members", n.name, r.byName[n.name].up(), members)
				break
			}
			copies += metric(n.admin, "scone_circulate_copies")
		}
		if want := 2 * r.changed(); why == nil && copies < float64(want) {
			why = fmt.Errorf("%v copies of %d sessions' state, want at least %d", copies, want/2, want)
		}
		if why == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not settled in %v: %w", wait, why)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
