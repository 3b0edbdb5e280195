package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scone-project/scone/internal/liveview"
	"github.com/scone-project/scone/relay"
)

// chaosTTL is the lifetime of the SCONEs the chaos servers seal: short,
// so that a clock skewed past it must refuse them.
const chaosTTL = 30 * time.Second

// deployShop starts the bookstore's tiers as processes, each replica
// reaching each replica below it through its own fault proxy, and returns
// the gateways' names and addresses.
func (r *chaosRun) deployShop() (names, addrs []string, err error) {
	tier := func(role string, below map[string][]string) ([]string, []string, error) {
		var names, addrs []string
		for i := range r.cfg.replicas {
			name := fmt.Sprintf("%s-%d", role, i+1)
			addr, err := freeAddr()
			if err != nil {
				return nil, nil, err
			}
			args := []string{"chaos", "child", "server", "--role=" + role, "--listen=" + addr, "--keys=" + r.keys, "--ttl=" + chaosTTL.String()}
			if r.marksURL != "" {
				args = append(args, "--nats="+r.marksURL)
			}
			for flag, targets := range below {
				var via []string
				for j, t := range targets {
					p, err := r.link(name, fmt.Sprintf("%s-%d", flag, j+1), t)
					if err != nil {
						return nil, nil, err
					}
					via = append(via, p)
				}
				args = append(args, "--"+flag+"="+strings.Join(via, ","))
			}
			env, err := r.skewable(name)
			if err != nil {
				return nil, nil, err
			}
			r.targets.Kill = append(r.targets.Kill, name)
			r.targets.Pause = append(r.targets.Pause, name)
			if err := r.addProc(&chaosProc{name: name, bin: r.bins.lab, args: func() []string { return args }, env: env, ready: dialReady(addr)}); err != nil {
				return nil, nil, err
			}
			names, addrs = append(names, name), append(addrs, addr)
		}
		return names, addrs, nil
	}
	_, inv, err := tier("inventory", nil)
	if err != nil {
		return nil, nil, err
	}
	_, cart, err := tier("cart", map[string][]string{"inventory": inv})
	if err != nil {
		return nil, nil, err
	}
	return tier("gateway", map[string][]string{"cart": cart, "inventory": inv})
}

// deployChaosClient: server replicas of every tier; the sessions hold their
// SCONEs and call the gateways. With --marks, a NATS server (not a target
// of the faults) keeps the mark store the servers share.
func deployChaosClient(r *chaosRun) error {
	if r.cfg.marks {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		args := []string{"chaos", "child", "nats", "--name=marks", "--listen=" + addr, "--dir=" + filepath.Join(r.dir, "marks")}
		if err := r.addProc(&chaosProc{name: "nats-marks", bin: r.bins.lab, args: func() []string { return args }, ready: dialReady(addr)}); err != nil {
			return err
		}
		r.marksURL = "nats://" + addr
	}
	names, addrs, err := r.deployShop()
	if err != nil {
		return err
	}
	for i, a := range addrs {
		p, err := r.link("client", names[i], a)
		if err != nil {
			return err
		}
		r.entry = append(r.entry, p)
	}
	return nil
}

// deployChaosRelay: a NATS JetStream cluster of three servers, the
// bookstore's tiers, and relays in front of the gateways that keep the
// sessions' SCONEs in a bucket with three replicas; the sessions have no
// SCONE code.
func deployChaosRelay(r *chaosRun) error {
	const natsServers = 3
	var clientAddrs, routeAddrs []string
	for range natsServers {
		c, err := freeAddr()
		if err != nil {
			return err
		}
		rt, err := freeAddr()
		if err != nil {
			return err
		}
		clientAddrs, routeAddrs = append(clientAddrs, c), append(routeAddrs, rt)
	}
	for i := range natsServers {
		name := fmt.Sprintf("nats-%d", i+1)
		var routes []string
		for j, rt := range routeAddrs {
			if j != i {
				routes = append(routes, "nats-route://"+rt)
			}
		}
		args := []string{"chaos", "child", "nats", "--name=" + name, "--listen=" + clientAddrs[i], "--cluster=" + routeAddrs[i],
			"--routes=" + strings.Join(routes, ","), "--dir=" + filepath.Join(r.dir, name)}
		r.targets.Kill = append(r.targets.Kill, name)
		r.targets.Pause = append(r.targets.Pause, name)
		if err := r.addProc(&chaosProc{name: name, bin: r.bins.lab, args: func() []string { return args }, ready: dialReady(clientAddrs[i])}); err != nil {
			return err
		}
	}
	if err := makeBucket(clientAddrs, natsServers); err != nil {
		return err
	}
	gwNames, gwAddrs, err := r.deployShop()
	if err != nil {
		return err
	}
	for i := range r.cfg.replicas {
		name := fmt.Sprintf("relay-%d", i+1)
		listen, err := freeAddr()
		if err != nil {
			return err
		}
		admin, err := freeAddr()
		if err != nil {
			return err
		}
		var ups, urls []string
		for j, a := range gwAddrs {
			p, err := r.link(name, gwNames[j], a)
			if err != nil {
				return err
			}
			ups = append(ups, p)
		}
		for j, a := range clientAddrs {
			p, err := r.link(name, fmt.Sprintf("nats-%d", j+1), a)
			if err != nil {
				return err
			}
			urls = append(urls, "nats://"+p)
		}
		args := []string{"relay", "--listen=" + listen, "--admin=" + admin, "--upstream=" + strings.Join(ups, ","),
			"--identity-header=scone-client", // sessions name themselves on 127.0.0.1, as behind an authenticating proxy
			"--store=jetstream", "--nats-url=" + strings.Join(urls, ","), fmt.Sprintf("--replicas=%d", natsServers)}
		env, err := r.skewable(name)
		if err != nil {
			return err
		}
		r.targets.Kill = append(r.targets.Kill, name)
		r.targets.Pause = append(r.targets.Pause, name)
		if err := r.addProc(&chaosProc{name: name, bin: r.bins.scone, args: func() []string { return args }, env: env, ready: dialReady(listen)}); err != nil {
			return err
		}
		p, err := r.link("client", name, listen)
		if err != nil {
			return err
		}
		r.entry = append(r.entry, p)
	}
	return nil
}

// makeBucket creates the relays' bucket once the JetStream cluster has a
// leader (30 s at most), so that no relay races another to create it.
func makeBucket(addrs []string, replicas int) error {
	var urls []string
	for _, a := range addrs {
		urls = append(urls, "nats://"+a)
	}
	nc, err := nats.Connect(strings.Join(urls, ","))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cfg := relay.DefaultJetStreamConfig()
	cfg.Replicas = replicas
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := relay.NewJetStreamStore(ctx, js, cfg)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("JetStream bucket: %w", err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// chaosNode is what the cluster checks need of a node.
type chaosNode struct {
	name, admin string
}

// deployChaosCluster: bookstore node processes with k copies of each
// session's state, each node's Peer service behind a fault proxy; the
// sessions have no SCONE code.
func deployChaosCluster(r *chaosRun) error {
	var nodes []*chaosProc
	for i := range r.cfg.nodes {
		name := fmt.Sprintf("node-%d", i+1)
		var addrs [5]string
		for j := range addrs {
			a, err := freeAddr()
			if err != nil {
				return err
			}
			addrs[j] = a
		}
		listen, g, admin, peer, front := addrs[0], addrs[1], addrs[2], addrs[3], addrs[4]
		r.gossip[name] = g
		r.gossipCuttable(name)
		// The other nodes reach this one's Peer service through one proxy:
		// partitioning it cuts every replication read and write to this
		// node, while gossip (cut off separately, through the node's chaos
		// control) still sees it alive.
		peerVia, err := r.link("peers", name, peer)
		if err != nil {
			return err
		}
		env, err := r.skewable(name)
		if err != nil {
			return err
		}
		secure, err := r.peerArgs(name)
		if err != nil {
			return err
		}
		p := &chaosProc{name: name, bin: r.bins.bookstore, env: env, ready: httpReady("http://" + admin + "/metrics")}
		p.args = func() []string {
			join := r.liveGossip(nodes, p)
			args := []string{"node", "--name=" + name, "--listen=" + listen, "--peer-listen=" + peer, "--peer-advertise=" + peerVia, "--gossip=" + g,
				"--admin=" + admin, "--keys=" + r.keys, fmt.Sprintf("--k=%d", r.cfg.k),
				"--identity-header=scone-client"} // sessions name themselves on 127.0.0.1, as behind an authenticating proxy
			args = append(args, secure...)
			if r.cfg.transport == "http" {
				args = append(args, "--http="+front)
			}
			if len(join) > 0 {
				args = append(args, "--join="+strings.Join(join, ","))
			}
			return args
		}
		nodes = append(nodes, p)
		entry := listen
		if r.cfg.transport == "http" {
			entry = front
		}
		if err := r.addMember(p, admin, entry); err != nil {
			return err
		}
	}
	return settleCluster(context.Background(), r, 30*time.Second)
}

// settleCluster waits until every node is up, sees every other, and has
// no repair left: only then can one more fail with nothing lost.
func settleCluster(ctx context.Context, r *chaosRun, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		var why error
		for _, n := range r.nodes {
			members, backlog := metric(n.admin, "scone_cluster_members"), metric(n.admin, "scone_cluster_repair_backlog")
			if !r.byName[n.name].up() || members != float64(len(r.nodes)) || backlog != 0 {
				why = fmt.Errorf("%s: up %v, %v members, repair backlog %v", n.name, r.byName[n.name].up(), members, backlog)
				break
			}
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

// checkClusterCopies checks that repair brought every session's record
// back to k copies: each record a node lists is listed by exactly k
// nodes (waiting up to 30 s for repair to finish), and every session that
// changed its cart has a record.
func checkClusterCopies(ctx context.Context, r *chaosRun) []string {
	changed := map[int]bool{}
	for _, op := range r.hist.Ops() {
		if op.Changes > 0 {
			changed[op.Session] = true
		}
	}
	start := time.Now()
	var problems []string
	for time.Since(start) < 30*time.Second && ctx.Err() == nil {
		problems = nil
		copies := map[string]int{}
		for _, n := range r.nodes {
			ids, err := nodeRecords(n.admin)
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s: %v", n.name, err))
			}
			for _, id := range ids {
				copies[id]++
			}
		}
		for id, c := range copies {
			if c != r.cfg.k {
				problems = append(problems, fmt.Sprintf("record %s has %d copies, want k=%d", id, c, r.cfg.k))
			}
		}
		if len(copies) < len(changed) {
			problems = append(problems, fmt.Sprintf("%d records for %d sessions that changed their carts", len(copies), len(changed)))
		}
		if len(problems) == 0 {
			r.narrate("cluster: every one of %d records has k=%d copies (%v after the faults healed)", len(copies), r.cfg.k, time.Since(start).Round(time.Millisecond))
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return problems
}

// nodeRecords lists the records a node holds, from its /debug/scone/.
func nodeRecords(admin string) ([]string, error) {
	hc := http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + admin + "/debug/scone/snapshot")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var s liveview.Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return nil, err
	}
	if len(s.Sessions) >= liveview.MaxSessions {
		return nil, errors.New("more records than the view lists")
	}
	var ids []string
	for _, us := range s.Sessions {
		ids = append(ids, us.ID)
	}
	return ids, nil
}

// metric returns the first sample of a metric on a daemon's /metrics, or
// -1.
func metric(admin, name string) float64 {
	hc := http.Client{Timeout: 2 * time.Second}
	resp, err := hc.Get("http://" + admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(?:\{[^}]*\})? (\S+)$`).FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// liveGossip returns the gossip addresses of the processes of ps but self
// that run: the members a (re)starting node or relay joins.
func (r *chaosRun) liveGossip(ps []*chaosProc, self *chaosProc) []string {
	var out []string
	for _, o := range ps {
		if o != self && o.up() {
			out = append(out, r.gossip[o.name])
		}
	}
	return out
}

// addMember adds a cluster node or circulating relay: a process the
// nemesis may kill and pause, whose admin endpoint the run reads, and
// which the sessions dial at listen through a proxy.
func (r *chaosRun) addMember(p *chaosProc, admin, listen string) error {
	r.targets.Kill = append(r.targets.Kill, p.name)
	r.targets.Pause = append(r.targets.Pause, p.name)
	if err := r.addProc(p); err != nil {
		return err
	}
	r.nodes = append(r.nodes, chaosNode{p.name, admin})
	pr, err := r.link("client", p.name, listen)
	if err != nil {
		return err
	}
	r.entry = append(r.entry, pr)
	return nil
}
