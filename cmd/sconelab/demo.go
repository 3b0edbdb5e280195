package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/cli"
	"github.com/scone-project/scone/sconegrpc"
)

type demoConfig struct {
	mode      string
	transport string
	sessions  int
	duration  time.Duration
	seed      uint64
	replicas  int
	killEvery time.Duration
	nodes     int
	k         int
	relays    int // circulate
	copies    int // circulate
	ui        string
	quiet     bool
}

func parseDemoFlags(args []string, out io.Writer) (demoConfig, error) {
	var c demoConfig
	fs := flag.NewFlagSet("sconelab demo", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.mode, "mode", "client", "where state lives: client (the client holds every tier's SCONEs), relay (relays in front of the gateways hold them in an embedded NATS JetStream bucket; the clients have no SCONE code), circulate (relays keep each client's SCONEs in memory, a few relays at a time, and hand them from relay to relay; a relay finds them by asking the others), or cluster (the bookstore nodes keep them, each on k nodes; the clients have no SCONE code)")
	fs.StringVar(&c.transport, "transport", "grpc", "how the shoppers reach the gateway: grpc, or http (the HTTP/JSON front, with the same handlers: SCONEs in headers in client mode; HTTP relays, or the cluster's HTTP middleware, in the other modes)")
	fs.IntVar(&c.sessions, "sessions", 32, "concurrent shopper sessions")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "how long the sessions shop")
	fs.Uint64Var(&c.seed, "seed", 0, "seed of every random choice (0: pick one and print it)")
	fs.IntVar(&c.replicas, "replicas", 3, "server replicas per tier (gateway, cart, inventory)")
	fs.DurationVar(&c.killEvery, "kill-every", 2*time.Second, "kill a random server replica this often, and restart it half as long later (0: never)")
	fs.IntVar(&c.nodes, "nodes", 4, "cluster mode: bookstore nodes")
	fs.IntVar(&c.k, "k", 2, "cluster mode: nodes that keep each session's state")
	fs.IntVar(&c.relays, "relays", 3, "circulate mode: relays in front of the gateways")
	fs.IntVar(&c.copies, "copies", 2, "circulate mode: relays holding each session's SCONEs at any time")
	fs.StringVar(&c.ui, "ui", "", "serve a live web view of the demo on this address (e.g. 127.0.0.1:8088): the topology, where each session's state lives, calls and errors, and buttons to kill and restart servers, relays and nodes")
	fs.BoolVar(&c.quiet, "quiet", false, "print only the summary")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: sconelab demo [flags]")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "Runs the bookstore example (gateway → cart → inventory, every tier keeping its")
		fmt.Fprintln(out, "per-session state in SCONEs held by the client) on 127.0.0.1, with several")
		fmt.Fprintln(out, "replicas per tier behind round-robin. Shopper sessions add and remove books and")
		fmt.Fprintln(out, "check out while server replicas are killed and restarted. Every reply is checked")
		fmt.Fprintln(out, "against a model of the session's acknowledged operations, and so is every")
		fmt.Fprintln(out, "session's final state. The last line reads")
		fmt.Fprintln(out, "  verified: sessions=N calls=M restarts=K lost=L")
		fmt.Fprintln(out, "where lost counts replies and final states that disagree with the model; the")
		fmt.Fprintln(out, "exit status is non-zero unless lost=0. A line before it splits the calls into")
		fmt.Fprintln(out, "parts that add up: acknowledged, refused as the model predicted, failed in")
		fmt.Fprintln(out, "flight, cut short when shopping stopped, and the reads of the cart that checked")
		fmt.Fprintln(out, "the outcomes of those and every session's final state.")
		fmt.Fprintln(out)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, cli.ErrHelp
		}
		return c, cli.ErrUsage
	}
	switch {
	case c.mode != "client" && c.mode != "relay" && c.mode != "circulate" && c.mode != "cluster":
		return c, fmt.Errorf("--mode=%q: want client, relay, circulate or cluster", c.mode)
	case c.transport != "grpc" && c.transport != "http":
		return c, fmt.Errorf("--transport=%q: want grpc or http", c.transport)
	case c.mode == "circulate" && (c.copies < 2 || c.copies >= c.relays):
		return c, fmt.Errorf("--copies=%d with --relays=%d: need 2 ≤ copies < relays, so a relay can be killed", c.copies, c.relays)
	case c.mode == "cluster" && (c.k < 1 || c.k >= c.nodes):
		return c, fmt.Errorf("--k=%d with --nodes=%d: need 1 ≤ k < nodes, so a node can be killed", c.k, c.nodes)
	case c.sessions < 1:
		return c, fmt.Errorf("--sessions=%d: need at least 1", c.sessions)
	case c.replicas < 2:
		return c, fmt.Errorf("--replicas=%d: need at least 2, so one can be killed", c.replicas)
	case c.duration <= 0:
		return c, fmt.Errorf("--duration=%v: must be positive", c.duration)
	case c.killEvery < 0:
		return c, fmt.Errorf("--kill-every=%v: must not be negative", c.killEvery)
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	return c, nil
}

func runDemo(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseDemoFlags(args, stdout)
	if err != nil {
		return err
	}
	d := &demo{cfg: cfg, out: stdout, start: time.Now()}
	return d.run(ctx)
}

// demo is one run of the demo.
type demo struct {
	cfg   demoConfig
	out   io.Writer
	start time.Time
	mu    sync.Mutex // serialises output
	// events orders the narration with what it tells: a kill or restart
	// and its line happen under it, and so do the ticker's reading of who
	// is up and its lines, so no line shows a replica down before the line
	// that kills it.
	events sync.Mutex

	sealer   *scone.Sealer    // every replica's: the web view opens client-held SCONEs with it
	dep      *shop.Deployment // --mode=client and relay
	relays   *relayTier       // --mode=relay and circulate
	cluster  *clusterTier     // --mode=cluster
	closers  []func()
	errs     codeCounts  // failed calls by code
	shopDone atomic.Bool // shopping is over
	groups   [][]victim  // what the nemesis kills: one group per tier
	sessions []*session
	restarts atomic.Int64
	kills    atomic.Int64
}

func (d *demo) say(format string, a ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fmt.Fprintf(d.out, "%6.1fs  %s\n", time.Since(d.start).Seconds(), fmt.Sprintf(format, a...))
}

func (d *demo) narrate(format string, a ...any) {
	if !d.cfg.quiet {
		d.say(format, a...)
	}
}

func (d *demo) run(ctx context.Context) error {
	cfg := d.cfg
	d.narrate("seed %d: the same seed makes the same choices (operations, which replica to kill)", cfg.seed)
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		return err
	}
	sealer, err := scone.NewSealer(ring, scone.WithTTL(time.Hour))
	d.sealer = sealer
	if err != nil {
		return err
	}
	d.narrate("made an ephemeral key (ID 1) shared by every replica; it is never written anywhere")
	defer d.close()
	var gw shopper
	if cfg.mode == "cluster" {
		gw, err = d.startCluster(sealer)
	} else {
		gw, err = d.deploy(sealer)
	}
	if err != nil {
		return err
	}

	for i := range cfg.sessions {
		d.sessions = append(d.sessions, &session{
			id:    i + 1,
			rng:   rand.New(rand.NewPCG(cfg.seed, uint64(i+1))),
			model: newCartModel(),
			dict:  scone.NewDict(),
			errs:  &d.errs,
			start: d.start,
		})
	}
	if cfg.ui != "" {
		uiCtx, stopUI := context.WithCancel(ctx)
		defer stopUI()
		addr, err := d.serveUI(uiCtx, cfg.ui)
		if err != nil {
			return fmt.Errorf("--ui=%s: %w", cfg.ui, err)
		}
		d.say("web view: http://%s/", addr)
	}
	d.followFirstSession()
	d.narrate("%d shopper sessions start, for %v; a replica is killed every %v", cfg.sessions, cfg.duration, cfg.killEvery)

	shopCtx, stopShopping := context.WithTimeout(ctx, cfg.duration)
	defer stopShopping()
	var wg sync.WaitGroup
	for _, s := range d.sessions {
		wg.Go(func() { s.shop(d.sessionContext(shopCtx, s), gw) })
	}
	wg.Go(func() { d.nemesis(shopCtx) })
	wg.Go(func() { d.ticker(shopCtx) })
	wg.Wait()
	d.shopDone.Store(true)
	if ctx.Err() != nil {
		return ctx.Err()
	}

	// Bring every replica back and read every session's final state.
	for _, g := range d.groups {
		for _, v := range g {
			switch err := v.restart(); {
			case err == nil:
				d.restarts.Add(1)
				d.narrate("restart %s for the final check", v.name)
			case !errors.Is(err, shop.ErrUp):
				return err
			}
		}
	}
	d.narrate("shopping over: reading every session's final cart and comparing it with its model")
	for _, s := range d.sessions {
		wg.Go(func() { s.finalCheck(d.sessionContext(ctx, s), gw) })
	}
	wg.Wait()
	return d.summary()
}

// sessionContext is the context of a session's calls: it carries the
// session (its holder) and, in relay mode, the header that names it.
func (d *demo) sessionContext(ctx context.Context, s *session) context.Context {
	ctx = context.WithValue(ctx, sessionKey{}, s)
	if d.cfg.mode != "client" {
		ctx = metadata.AppendToOutgoingContext(ctx, "scone-client", fmt.Sprintf("shopper-%d", s.id))
	}
	return ctx
}

// deploy starts the bookstore tiers of client and relay modes, and returns
// how shoppers reach them.
func (d *demo) deploy(sealer *scone.Sealer) (_ shopper, err error) {
	cfg := d.cfg
	var opts []shop.DeployOption
	if cfg.transport == "http" {
		opts = append(opts, shop.WithHTTP())
	}
	if d.dep, err = shop.Deploy(sealer, cfg.replicas, opts...); err != nil {
		return nil, err
	}
	d.onClose(d.dep.Close)
	for _, role := range []shop.Role{shop.RoleGateway, shop.RoleCart, shop.RoleInventory} {
		var names []string
		for _, r := range d.dep.Replicas(role) {
			n := r.Name + "@" + r.Addr
			if r.HTTPAddr != "" {
				n += " (HTTP " + r.HTTPAddr + ")"
			}
			names = append(names, n)
		}
		d.narrate("%-9s replicas: %s", role, strings.Join(names, ", "))
	}
	d.narrate("the gateway calls cart and inventory; cart calls inventory; every tier keeps its")
	for _, role := range []shop.Role{shop.RoleGateway, shop.RoleCart, shop.RoleInventory} {
		var g []victim
		for _, r := range d.dep.Replicas(role) {
			g = append(g, victim{r.Name, r.Addr, r.Up, r.Kill, r.Restart})
		}
		d.groups = append(d.groups, g)
	}
	if cfg.mode == "relay" || cfg.mode == "circulate" {
		upstreams, overHTTP := d.dep.Addrs(shop.RoleGateway), cfg.transport == "http"
		if overHTTP {
			upstreams = nil
			for _, r := range d.dep.Replicas(shop.RoleGateway) {
				upstreams = append(upstreams, r.HTTPAddr)
			}
		}
		if cfg.mode == "relay" {
			d.relays, err = startRelayTier(2, upstreams, overHTTP)
		} else {
			d.relays, err = startCirculateTier(cfg.relays, cfg.copies, upstreams, overHTTP)
		}
		if err != nil {
			return nil, err
		}
		d.onClose(d.relays.close)
		var g []victim
		front := "the gateways"
		if cfg.transport == "http" {
			front = "the gateways' HTTP fronts (an HTTP reverse proxy)"
		}
		for _, r := range d.relays.relays {
			g = append(g, victim{r.name, r.addr, r.up, r.kill, r.restart})
			d.narrate("%-9s %s@%s, in front of %s", "relay", r.name, r.addr, front)
		}
		d.groups = append(d.groups, g)
		d.narrate("per-session state in a SCONE; the relays take the SCONEs off the replies and keep them")
		if cfg.mode == "relay" {
			d.narrate("in a NATS JetStream bucket (NATS embedded here) they share: the shoppers have no SCONE")
		} else {
			d.narrate("in circulation: %d copies of each session's, handed from relay to relay, and found by", cfg.copies)
			d.narrate("asking the other relays when a request comes to one without them: the shoppers have no SCONE")
		}
		d.narrate("code at all, only a scone-client header naming them, and no server or relay keeps any")
	} else {
		d.narrate("per-session state in a SCONE that the shopper's client holds, and no replica keeps any")
	}

	var gw shopper
	if d.relays != nil && cfg.transport == "http" {
		var targets []httpTarget
		for _, r := range d.relays.relays {
			targets = append(targets, httpTarget{r.name, r.addr})
		}
		gw = newHTTPShopper(targets, false)
		d.narrate("the shoppers talk HTTP/JSON to the relays with a plain HTTP client: no cookies, no Scone headers")
	} else if d.relays != nil {
		conn, err := shop.DialReplicas(d.relays.addrs()) // a plain gRPC client: no hook
		if err != nil {
			return nil, err
		}
		d.onClose(func() { conn.Close() })
		gw = &grpcShopper{gw: pb.NewGatewayClient(conn), names: d.addrNames()}
	} else if cfg.transport == "http" {
		var targets []httpTarget
		for _, r := range d.dep.Replicas(shop.RoleGateway) {
			targets = append(targets, httpTarget{r.Name, r.HTTPAddr})
		}
		gw = newHTTPShopper(targets, true)
		d.narrate("the shoppers talk HTTP/JSON to the gateways' HTTP fronts, their SCONEs in Scone headers")
	} else {
		conn, err := shop.DialReplicas(d.dep.Addrs(shop.RoleGateway), sconegrpc.DialOptions(sconegrpc.WithHolderFromContext(holderOf))...)
		if err != nil {
			return nil, err
		}
		d.onClose(func() { conn.Close() })
		gw = &grpcShopper{gw: pb.NewGatewayClient(conn), names: d.addrNames()}
	}
	return gw, nil
}

// onClose registers f to run when the demo ends, after those registered
// later.
func (d *demo) onClose(f func()) { d.closers = append(d.closers, f) }

func (d *demo) close() {
	for _, f := range slices.Backward(d.closers) {
		f()
	}
}

// victim is something the nemesis can kill and restart.
type victim struct {
	name, addr string
	up         func() bool
	kill       func()
	restart    func() error
}

// addrNames maps the replicas' (and relays') addresses to their names.
func (d *demo) addrNames() map[string]string {
	names := map[string]string{}
	for _, g := range d.groups {
		for _, v := range g {
			names[v.addr] = v.name
		}
	}
	return names
}

// followFirstSession narrates session 1's first operations: which replica
// served each, and which SCONEs the client holds after it.
func (d *demo) followFirstSession() {
	s := d.sessions[0]
	left := 6
	s.tell = func(o op, servedBy string, err error) {
		if left--; left < 0 {
			s.tell = nil
			return
		}
		outcome := "ok"
		if err != nil {
			outcome = status.Code(err).String() + ": " + status.Convert(err).Message()
		}
		var held []string
		for _, h := range s.dict.Headers() {
			svc := h.Service[strings.LastIndexByte(h.Service, '.')+1:]
			held = append(held, fmt.Sprintf("%s v%d", svc, h.Version))
		}
		slices.Sort(held)
		n, b := s.dict.Len()
		holds := "nothing yet"
		if n > 0 {
			holds = fmt.Sprintf("%d SCONEs, %d B, scoped to /bookstore.v1.Gateway/: %s", n, b, strings.Join(held, ", "))
		}
		scope := "/bookstore.v1.Gateway/"
		if d.cfg.transport == "http" {
			scope = shop.HTTPScope
		}
		if n > 0 {
			holds = strings.Replace(holds, "/bookstore.v1.Gateway/", scope, 1)
		}
		d.narrate("session 1: %s via %s → %s; the client holds %s", o, servedBy, outcome, holds)
	}
}

// nemesis kills a random replica (or relay) every killEvery, and restarts
// it half a period later; at least one of each group stays up. With relays,
// every other kill is a relay's.
func (d *demo) nemesis(ctx context.Context) {
	if d.cfg.killEvery == 0 {
		return
	}
	r := rand.New(rand.NewPCG(d.cfg.seed, 0))
	tick := time.NewTicker(d.cfg.killEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		g := d.groups[r.IntN(len(d.groups))]
		if d.relays != nil && d.kills.Load()%2 == 0 {
			g = d.groups[len(d.groups)-1] // every other kill is a relay's
		}
		if ctx.Err() != nil {
			return // the tick and the end came together
		}
		v := g[r.IntN(len(g))]
		up := 0
		for _, x := range g {
			if x.up() {
				up++
			}
		}
		if !v.up() || up < 2 || d.cluster != nil && !d.cluster.settled() || d.relays != nil && !d.relays.settled() {
			continue // a cluster, or circulation, loses one member at a time, once repaired
		}
		d.events.Lock()
		v.kill()
		d.kills.Add(1)
		circulating := d.relays != nil && d.relays.copies > 0 && strings.HasPrefix(v.name, "relay-")
		if circulating {
			d.narrate("kill %s: calls in flight through it fail, and the copies it held are gone; once the other relays notice (about a second), each session's other copy is handed on, which recreates the lost one", v.name)
		} else if d.cluster != nil {
			d.narrate("kill %s: calls in flight through it fail, and its copies of session records are gone; the sessions it kept are served from their other copy once the others notice (about a second), and repair copies them again", v.name)
		} else {
			d.narrate("kill %s: its connections drop and calls in flight through it fail; it held no session state", v.name)
		}
		d.events.Unlock()
		time.AfterFunc(d.cfg.killEvery/2, func() {
			d.events.Lock()
			defer d.events.Unlock()
			if ctx.Err() != nil {
				return // the final check restarts it
			}
			switch err := v.restart(); {
			case err == nil:
				d.restarts.Add(1)
				d.narrate("restart %s on %s", v.name, v.addr)
			case !errors.Is(err, shop.ErrUp):
				d.say("restart %s failed: %v", v.name, err)
			}
		})
	}
}

// ticker narrates progress once a second: calls, where they were served,
// and where the state is.
func (d *demo) ticker(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	last := map[string]int64{}
	var lastCalls int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d.events.Lock()
		var calls, scones, bytes int64
		for _, s := range d.sessions {
			calls += s.calls.Load()
			n, b := s.dict.Len()
			scones += int64(n)
			bytes += int64(b)
		}
		var served []string
		note := func(name string, n int64, up bool) {
			mark := ""
			if !up {
				mark = " (down)"
			}
			served = append(served, fmt.Sprintf("%s %d%s", name, n-last[name], mark))
			last[name] = n
		}
		if d.cluster != nil {
			for _, m := range d.cluster.nodes {
				note(m.spec.Name, m.calls(), m.up())
			}
		} else {
			for _, role := range []shop.Role{shop.RoleGateway, shop.RoleCart, shop.RoleInventory} {
				for _, r := range d.dep.Replicas(role) {
					note(r.Name, r.Served(), r.Up())
				}
			}
		}
		d.narrate("%d calls/s; served: %s", calls-lastCalls, strings.Join(served, ", "))
		switch {
		case d.cluster != nil:
			d.narrate("state: %d copies of session records in the nodes (k=%d each); 0 bytes in the clients", d.cluster.records(), d.cluster.k)
		case d.relays != nil && d.relays.copies > 0:
			n, c := d.relays.held(ctx)
			d.narrate("state: %d sessions' SCONEs in circulation, %d copies on the relays; 0 bytes in the clients and servers", n, c)
		case d.relays != nil:
			// Not ctx: the line at the end of shopping reads the bucket too.
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			n, b := d.relays.held(hctx)
			cancel()
			d.narrate("state: %d sessions' SCONEs (%.1f KiB) in the relays' JetStream bucket; 0 bytes in the clients and servers", n, float64(b)/1024)
		default:
			d.narrate("state: %d SCONEs (%.1f KiB) held by %d clients; 0 bytes in the servers", scones, float64(bytes)/1024, len(d.sessions))
		}
		d.events.Unlock()
		lastCalls = calls
	}
}

func (d *demo) summary() error {
	var calls, ok, refused, aborted, unknown, cut, wrong, reads, applied, lost int64
	type lostOne struct{ what, calls string }
	var problems []lostOne
	for _, s := range d.sessions {
		calls += s.calls.Load()
		ok += s.ok
		refused += s.refused
		aborted += s.aborted
		unknown += s.unknown
		cut += s.cut
		wrong += s.wrong
		reads += s.reads
		applied += s.applied
		lost += int64(len(s.problems))
		for i, p := range s.problems {
			l := lostOne{what: fmt.Sprintf("session %d: %s", s.id, p)}
			if i < len(s.lastCalls) {
				l.calls = strings.Join(s.lastCalls[i], "; ")
			}
			problems = append(problems, l)
		}
	}
	for i, p := range problems {
		if i == 20 {
			d.say("... and %d more", len(problems)-20)
			break
		}
		d.say("LOST %s", p.what)
		if p.calls != "" {
			d.say("     its last calls, oldest first: %s", p.calls)
		}
	}
	// Every call is in exactly one of these parts, so they add up to
	// calls; the parts that are zero are left out.
	parts := []string{fmt.Sprintf("%d acknowledged", ok), fmt.Sprintf("%d refused by the shop's rules as the model predicted", refused)}
	for _, p := range []struct {
		n    int64
		what string
	}{
		{aborted, "failed with Aborted"},
		{unknown, "failed in flight"},
		{cut, "cut short when shopping stopped"},
		{wrong, "answered against the model"},
		{reads, "reads of the cart that checked outcomes and final states"},
	} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", p.n, p.what))
		}
	}
	d.say("%d calls = %s", calls, strings.Join(parts, " + "))
	if aborted > 0 {
		d.say("%d calls failed with Aborted (a conflict: another request of the session changed its state first) and were not applied", aborted)
	}
	if unknown+cut > 0 {
		d.say("%d calls failed in flight (a replica or relay was killed) and %d were cut short when shopping stopped; reading the cart after each showed %d had taken effect and %d had not",
			unknown, cut, applied, unknown+cut-applied)
	}
	if reads > 0 {
		d.say("%d reads of the cart: one after each call of unknown outcome, one final read per session, and retries while servers came back", reads)
	}
	d.say("%d kills, %d restarts; seed %d", d.kills.Load(), d.restarts.Load(), d.cfg.seed)
	fmt.Fprintf(d.out, "verified: sessions=%d calls=%d restarts=%d lost=%d\n", len(d.sessions), calls, d.restarts.Load(), lost)
	if lost > 0 {
		return fmt.Errorf("%d replies or final states disagree with the model", lost)
	}
	return nil
}

type sessionKey struct{}

// session is one shopper: a holder of SCONEs, a model, and counters.
type session struct {
	id    int
	rng   *rand.Rand
	model *cartModel
	dict  *scone.Dict

	// calls counts every call: the operations (ok + refused + aborted +
	// unknown + cut + wrong) and the reads that check them (reads).
	calls            atomic.Int64
	ok, refused      int64
	aborted          int64         // conflicts: failed with nothing kept
	timeout          time.Duration // of each call (0: 5 s)
	unknown, applied int64         // failed in flight (outcome unknown), and of all those of unknown outcome, found applied
	cut              int64         // in flight when shopping stopped (outcome unknown too)
	wrong            int64         // answered against the model (each is also a problem)
	reads            int64         // reads of the cart that learn an unknown outcome or the final state, retries included
	pending          *op           // a call whose outcome is not known yet
	problems         []string      // what disagreed with the model (see problem)
	lost             atomic.Int64  // len(problems), for readers on other goroutines
	// history is the session's last calls (see note), and lastCalls the
	// history as each problem was found: the LOST lines show it, so an
	// operator sees which calls led to a state that disagrees.
	history   []string
	lastCalls [][]string
	start     time.Time   // when the demo started, for the history's times
	errs      *codeCounts // failed calls by code, shared by the sessions
	// tell, if set, narrates an operation: session 1's first few.
	tell func(o op, servedBy string, err error)
}

// problem records a reply or state that disagrees with the model.
func (s *session) problem(p string) {
	s.problems = append(s.problems, p)
	s.lastCalls = append(s.lastCalls, slices.Clone(s.history))
	s.lost.Add(1)
}

// historyLen is how many of its last calls a session remembers.
const historyLen = 8

// note records one call in the session's history: when it started, the
// operation, the node or replica that served it, how long it took, and its
// outcome, with the changes the gateway counted if it replied (changes < 0
// if not) and what the session concluded from it (what).
func (s *session) note(at time.Time, o op, servedBy string, err error, changes int64, what string) {
	if servedBy == "" {
		servedBy = "?"
	}
	outcome := "ok"
	if err != nil {
		outcome = status.Code(err).String()
	}
	if changes >= 0 {
		outcome += fmt.Sprintf(", %d changes", changes)
	}
	if what != "" {
		outcome += ", " + what
	}
	var t float64
	if !s.start.IsZero() {
		t = at.Sub(s.start).Seconds()
	}
	s.history = append(s.history, fmt.Sprintf("%.2fs %s via %s in %.0fms: %s", t, o, servedBy,
		float64(time.Since(at).Microseconds())/1000, outcome))
	if len(s.history) > historyLen {
		s.history = slices.Delete(s.history, 0, len(s.history)-historyLen)
	}
}

// changesOf is the count of changes a reply shows, or -1 if none.
func changesOf(v *pb.CartView, o *pb.Order, err error) int64 {
	switch {
	case err != nil:
		return -1
	case o != nil:
		return int64(o.GetOperations())
	case v != nil:
		return int64(v.GetOperations())
	}
	return -1
}

// shop makes operations until ctx is done.
func (s *session) shop(ctx context.Context, gw shopper) {
	for ctx.Err() == nil {
		if s.pending != nil && !s.resolve(ctx, gw) {
			return
		}
		s.do(ctx, gw, s.model.nextOp(s.rng))
	}
}

// do makes one operation and checks its outcome against the model.
func (s *session) do(ctx context.Context, gw shopper, o op) {
	want := s.model.expectError(o)
	before := maps.Clone(s.model.items)
	timeout := s.timeout
	if timeout == 0 {
		timeout = 5 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.Now()
	view, order, servedBy, err := gw.call(cctx, o)
	s.calls.Add(1)
	code := status.Code(err)
	// stopped: the end of shopping cut the call short.
	stopped := ctx.Err() != nil && (code == codes.DeadlineExceeded || code == codes.Canceled)
	what := ""
	if stopped {
		what = "cut short when shopping stopped"
	}
	s.note(t, o, servedBy, err, changesOf(view, order, err), what)
	if err != nil && code != want && !stopped && s.errs != nil {
		s.errs.add(code.String()) // not a refusal the model predicts
	}
	if s.tell != nil {
		s.tell(o, servedBy, err)
	}
	switch {
	case err == nil && want == codes.OK:
		s.ok++
		s.model.apply(o)
		var problem string
		if order != nil {
			problem = s.model.checkOrder(order, before)
		} else {
			problem = s.model.checkView(view)
		}
		if problem != "" {
			s.problem(fmt.Sprintf("%s %s×%d: %s", o.kind, o.isbn, o.quantity, problem))
		}
	case err == nil:
		s.model.apply(o) // keep following the server, but report it
		s.wrong++
		s.problem(fmt.Sprintf("%s %s×%d succeeded, must fail with %v", o.kind, o.isbn, o.quantity, want))
	case code == want:
		s.refused++
	case code == codes.Aborted:
		// Another request of the session changed its state first (in
		// cluster mode, one still in flight after the client gave up on
		// it): nothing of this one was kept.
		s.aborted++
	case errors.Is(err, errBodyLost), code == codes.Unavailable, code == codes.DeadlineExceeded, code == codes.Canceled:
		// A server, relay or connection died mid-call. With the client as
		// holder the call had no effect (the client kept its SCONEs); with a
		// relay, the relay may have stored the new state before the reply
		// was lost. Either way the next read tells. The end of shopping
		// cuts calls short the same way; those are counted apart.
		if stopped {
			s.cut++
		} else {
			s.unknown++
		}
		s.pending = &o
	default:
		s.wrong++
		s.problem(fmt.Sprintf("%s %s×%d: unexpected %v", o.kind, o.isbn, o.quantity, err))
	}
}

// resolve reads the cart after a call of unknown outcome: it must show the
// state without the call, or (if the call was valid) with it, and the model
// follows. It returns false when ctx ends first.
func (s *session) resolve(ctx context.Context, gw shopper) bool {
	v, ok := s.read(ctx, gw)
	if !ok {
		return false
	}
	o := *s.pending
	s.pending = nil
	if s.model.checkView(v) == "" {
		s.history[len(s.history)-1] += fmt.Sprintf(": the %s had not taken effect", o.kind)
		return true
	}
	if s.model.expectError(o) == codes.OK {
		after := s.model.clone()
		after.apply(o)
		if after.checkView(v) == "" {
			s.model, s.applied = after, s.applied+1
			s.history[len(s.history)-1] += fmt.Sprintf(": the %s had taken effect", o.kind)
			return true
		}
	}
	s.problem(fmt.Sprintf("after %s %s×%d of unknown outcome the cart is neither without nor with it: %s",
		o.kind, o.isbn, o.quantity, s.model.checkView(v)))
	return true
}

// read gets the cart, retrying while servers come back (10 s at most).
func (s *session) read(ctx context.Context, gw shopper) (*pb.CartView, bool) {
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	var tries []string // the failed attempts, for the problem
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		t := time.Now()
		v, _, servedBy, err := gw.call(cctx, op{kind: opGet})
		cancel()
		s.calls.Add(1)
		s.reads++
		s.note(t, op{kind: opGet}, servedBy, err, changesOf(v, nil, err), "a read that checks")
		if err == nil {
			return v, true
		}
		if servedBy == "" {
			servedBy = "?"
		}
		tries = append(tries, fmt.Sprintf("%s@%.1fs: %v after %.1fs", servedBy,
			t.Sub(start).Seconds(), status.Code(err), time.Since(t).Seconds()))
		if time.Now().After(deadline) {
			s.problem(fmt.Sprintf("cart unreadable for 10 s: %v (attempts from %s: %s)", err,
				start.UTC().Format("15:04:05.000"), strings.Join(tries, ", ")))
			return nil, false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, false
}

// finalCheck resolves a pending call, reads the cart, and compares it with
// the model.
func (s *session) finalCheck(ctx context.Context, gw shopper) {
	if s.pending != nil && !s.resolve(ctx, gw) {
		return
	}
	if v, ok := s.read(ctx, gw); ok {
		if problem := s.model.checkView(v); problem != "" {
			s.problem("final state: " + problem)
		}
	}
}
