package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/chaos"
	"github.com/scone-project/scone/internal/chaosctl"
	"github.com/scone-project/scone/internal/cli"
	"github.com/scone-project/scone/internal/faultproxy"
)

type chaosConfig struct {
	mode      string
	marks     bool
	transport string
	duration  time.Duration
	seed      uint64
	sessions  int
	replicas  int
	nodes     int
	k         int
	every     time.Duration
	timeout   time.Duration
	think     time.Duration
	check     time.Duration
	rotate    time.Duration // between two key rotations (0: none)
	cutGossip bool
	retire    time.Duration // from a rotation to the old key's retirement
	out       string
	bin       string // prebuilt labBins ("" builds them)
	quiet     bool
}

// chaosMode is how one mode is deployed and checked. A new mode (e.g.
// circulate) is one more entry in chaosModes.
type chaosMode struct {
	// deploy starts the mode's processes and links, and sets the
	// addresses the sessions dial (run.entry) and the nemesis's targets.
	deploy func(r *chaosRun) error
	// clientHolds: the sessions hold their SCONEs, so a call that failed,
	// even without a reply, changed nothing.
	clientHolds bool
	// unavailableChangesNothing: a call the mode fails with SCONE code
	// unavailable promises the state is unchanged (cluster: fewer than k
	// nodes took the write, and every node it may have reached took it
	// back; circulate: the relays failed it before any write). Where that
	// is not known, the modes say in_doubt instead.
	unavailableChangesNothing bool
	// settle, if set, waits until the system can lose a process without
	// losing state (cluster mode: repair done), before a kill, a pause or a
	// gossip cut.
	settle func(ctx context.Context, r *chaosRun, wait time.Duration) error
	// final, if set, checks the mode's own invariants once every fault
	// healed and every session read its state.
	final func(ctx context.Context, r *chaosRun) []string
	// skews are the clock offsets the nemesis applies to its targets.
	skews []time.Duration
}

// gossipCuttable registers a process whose gossip partitions may cut off,
// if the run does so (--cut-gossip).
func (r *chaosRun) gossipCuttable(name string) {
	if r.cfg.cutGossip {
		r.targets.Gossip = append(r.targets.Gossip, name)
	}
}

var chaosModes = map[string]chaosMode{
	"client": {
		deploy: deployChaosClient, clientHolds: true,
		// The servers seal with a 30 s lifetime: a clock 45 s ahead must
		// refuse every SCONE the others sealed, as expired.
		skews: []time.Duration{45 * time.Second, 5 * time.Second, -5 * time.Second},
	},
	"relay": {
		deploy: deployChaosRelay,
		skews:  []time.Duration{45 * time.Second, 5 * time.Second, -5 * time.Second},
	},
	"cluster": {
		deploy: deployChaosCluster, settle: settleCluster, final: checkClusterCopies, unavailableChangesNothing: true,
		skews: []time.Duration{30 * time.Second, 2 * time.Second, -30 * time.Second},
	},
	"circulate": {
		deploy: deployChaosCirculate, settle: settleCirculate, unavailableChangesNothing: true,
		skews: []time.Duration{45 * time.Second, 5 * time.Second, -5 * time.Second},
	},
}

func chaosModeNames() string {
	var names []string
	for n := range chaosModes {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func parseChaosFlags(args []string, out io.Writer) (chaosConfig, error) {
	var c chaosConfig
	fs := flag.NewFlagSet("sconelab chaos", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.mode, "mode", "client", "where state lives: "+chaosModeNames())
	fs.StringVar(&c.transport, "transport", "grpc", "how the sessions reach the system: grpc, or http (cluster mode: the nodes' HTTP front, the bookstore's HTTP handlers behind the cluster's HTTP middleware)")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "how long the sessions run under faults")
	fs.Uint64Var(&c.seed, "seed", 0, "seed of the fault schedule and of the operations (0: pick one and print it)")
	fs.IntVar(&c.sessions, "sessions", 8, "concurrent client sessions")
	fs.BoolVar(&c.marks, "marks", false, "client mode: the servers spend each SCONE version once, through a JetStream mark store they share (a NATS server the faults spare)")
	fs.IntVar(&c.replicas, "replicas", 2, "client and relay modes: replicas of each server tier (and relays)")
	fs.IntVar(&c.nodes, "nodes", 4, "cluster mode: nodes")
	fs.IntVar(&c.k, "k", 2, "cluster mode: nodes that keep each session's state")
	fs.DurationVar(&c.every, "fault-every", 3*time.Second, "mean time between two faults (one fault at a time)")
	fs.DurationVar(&c.timeout, "call-timeout", 2*time.Second, "timeout of each call")
	fs.DurationVar(&c.think, "think", 20*time.Millisecond, "pause of a session between two calls")
	fs.DurationVar(&c.check, "check-timeout", 60*time.Second, "time the linearizability search may take per session")
	fs.BoolVar(&c.cutGossip, "cut-gossip", true, "cluster and circulate modes: about half the partitions cut a node's or relay's gossip off from every other's instead of a TCP link")
	fs.DurationVar(&c.rotate, "rotate-every", 45*time.Second, "time between two key rotations (add, promote, retire; the first after a quarter of it, or of --duration if shorter); 0: none")
	fs.DurationVar(&c.retire, "retire-after", 8*time.Second, "how long a rotated-out key still opens SCONEs: shorter than their 30 s lifetime, so servers must refuse the SCONEs not re-sealed since")
	fs.StringVar(&c.out, "out", "chaos-out", "on a violation, the folder for porcupine's HTML view, the history and the processes' logs")
	fs.StringVar(&c.bin, "bin", "", "folder of the scone, bookstore and sconelab binaries to run, built with -tags sconechaos (default: build them from the source of the module the working directory is in)")
	fs.BoolVar(&c.quiet, "quiet", false, "print only the summary")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: sconelab chaos [flags]")
		fmt.Fprintln(out)
		fmt.Fprintln(out, "Starts the system of a mode as real processes on 127.0.0.1 (the bookstore's servers,")
		fmt.Fprintln(out, "scone relay and a 3-server NATS JetStream cluster, or the bookstore's cluster nodes),")
		fmt.Fprintln(out, "built first with -tags sconechaos (the only build with fault hooks), runs client")
		fmt.Fprintln(out, "sessions that record every call, and injects faults on a schedule drawn from the")
		fmt.Fprintln(out, "seed: kill -9 and restart, SIGSTOP and SIGCONT, TCP partitions and latency between")
		fmt.Fprintln(out, "processes, a node or relay's gossip cut off from the others', clock skew; and it")
		fmt.Fprintln(out, "rotates the keys. Then it checks each session's history for linearizability")
		fmt.Fprintln(out, "(porcupine; calls without reply may or may not have taken effect) and SCONE's")
		fmt.Fprintln(out, "invariants. See RELIABILITY.md. The last line reads")
		fmt.Fprintln(out, "  chaos: mode=M ops=N faults=F unknown=U violations=V seed=S")
		fmt.Fprintln(out, "and the exit status is non-zero unless violations=0 and every session's history")
		fmt.Fprintln(out, "was checked within --check-timeout.")
		fmt.Fprintln(out)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, cli.ErrHelp
		}
		return c, cli.ErrUsage
	}
	switch _, ok := chaosModes[c.mode]; {
	case !ok:
		return c, fmt.Errorf("--mode=%q: want %s", c.mode, chaosModeNames())
	case c.transport != "grpc" && c.transport != "http":
		return c, fmt.Errorf("--transport=%q: want grpc or http", c.transport)
	case c.transport == "http" && c.mode != "cluster":
		return c, fmt.Errorf("--transport=http: only in cluster mode")
	case c.duration <= 0 || c.every <= 0 || c.timeout <= 0 || c.check <= 0:
		return c, errors.New("--duration, --fault-every, --call-timeout and --check-timeout must be positive")
	case c.rotate < 0 || c.rotate > 0 && c.retire <= 0:
		return c, errors.New("--rotate-every must not be negative, and --retire-after must be positive")
	case c.sessions < 1 || c.sessions > 40:
		return c, fmt.Errorf("--sessions=%d: want 1 to 40", c.sessions)
	case c.replicas < 2:
		return c, fmt.Errorf("--replicas=%d: need at least 2, so one can fail", c.replicas)
	case c.mode == "cluster" && (c.k < 1 || c.k >= c.nodes):
		return c, fmt.Errorf("--k=%d with --nodes=%d: need 1 ≤ k < nodes", c.k, c.nodes)
	}
	if c.seed == 0 {
		c.seed = uint64(time.Now().UnixNano())
	}
	return c, nil
}

func runChaos(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "child" {
		return runChaosChild(ctx, args[1:])
	}
	cfg, err := parseChaosFlags(args, stdout)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "scone-chaos-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	bins := binsIn(cfg.bin)
	if cfg.bin == "" {
		if bins, err = buildLabBins(filepath.Join(dir, "bin")); err != nil {
			return err
		}
	}
	r := &chaosRun{
		cfg: cfg, mode: chaosModes[cfg.mode], out: stdout, bins: bins, dir: dir, start: time.Now(),
		byName: map[string]*chaosProc{}, proxies: map[string]*faultproxy.Proxy{},
		names: map[string]string{}, clocks: map[string]*procClock{}, gossip: map[string]string{}, faults: map[chaos.FaultKind]int{},
		changers: map[int]bool{}, retired: map[uint32]time.Duration{},
	}
	defer r.close()
	return r.run(ctx)
}

// chaosRun is one run of sconelab chaos.
type chaosRun struct {
	cfg      chaosConfig
	mode     chaosMode
	out      io.Writer
	bins     labBins
	dir      string // keys, logs, NATS data
	keys     string
	peers    *peerSecrets // cluster and circulate modes: peer certificates and gossip key
	marksURL string       // the mark store of client mode (--marks), or empty
	start    time.Time    // of the run, for the narration
	t0       time.Time    // of the sessions and the fault schedule

	procs   []*chaosProc
	byName  map[string]*chaosProc
	proxies map[string]*faultproxy.Proxy // by link "from>to"
	names   map[string]string            // proxy address → the process behind it
	clocks  map[string]*procClock        // by process
	gossip  map[string]string            // gossip address by process (cluster and circulate modes)
	entry   []string                     // what the sessions dial
	nodes   []chaosNode                  // cluster and circulate modes
	targets chaos.Targets
	hist    *chaos.History

	mu         sync.Mutex // guards what follows, and output
	faults     map[chaos.FaultKind]int
	gossipCuts int                      // of the partitions, those that cut a process's gossip off
	retired    map[uint32]time.Duration // key ID → retirement (History offset)
	rotations  int
	skipped    int
	changers   map[int]bool    // sessions with an acknowledged change
	restarts   []time.Duration // time from a restart to the process being ready
}

func (r *chaosRun) say(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.out, "%6.1fs  %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, a...))
}

func (r *chaosRun) narrate(format string, a ...any) {
	if !r.cfg.quiet {
		r.say(format, a...)
	}
}

// close kills the processes and closes the proxies; it may be called
// more than once.
func (r *chaosRun) close() {
	for _, p := range slices.Backward(r.procs) {
		p.pause(false)
		p.kill()
	}
	for name, p := range r.proxies {
		p.Close()
		delete(r.proxies, name)
	}
}

// addProc starts a process of the run.
func (r *chaosRun) addProc(p *chaosProc) error {
	p.logPath = filepath.Join(r.dir, "logs", p.name+".log")
	r.procs = append(r.procs, p)
	r.byName[p.name] = p
	return p.start()
}

// link returns the address from dials to reach to (at target): a fault
// proxy the nemesis can partition or slow down.
func (r *chaosRun) link(from, to, target string) (string, error) {
	p, err := faultproxy.Listen("127.0.0.1:0", target)
	if err != nil {
		return "", err
	}
	name := from + ">" + to
	r.proxies[name] = p
	r.names[p.Addr()] = to
	r.targets.Links = append(r.targets.Links, name)
	return p.Addr(), nil
}

// skewable returns the environment that makes a process's clock skewable,
// and registers it as a target of clock skew.
func (r *chaosRun) skewable(name string) ([]string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	r.clocks[name] = &procClock{addr: addr}
	r.targets.Skew = append(r.targets.Skew, name)
	return []string{chaosctl.Env + "=" + addr}, nil
}

func (r *chaosRun) run(ctx context.Context) error {
	cfg := r.cfg
	r.narrate("seed %d: the same seed draws the same fault schedule and operations", cfg.seed)
	if err := os.MkdirAll(filepath.Join(r.dir, "logs"), 0o755); err != nil {
		return err
	}
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		return err
	}
	r.keys = filepath.Join(r.dir, "keys.json")
	if err := scone.WriteKeyFile(r.keys, ring); err != nil {
		return err
	}
	if err := r.mode.deploy(r); err != nil {
		return r.fail(fmt.Errorf("starting the %s system: %w", cfg.mode, err))
	}
	r.targets.Skews = r.mode.skews
	var names []string
	for _, p := range r.procs {
		names = append(names, p.name)
	}
	r.narrate("%d processes up: %s", len(r.procs), strings.Join(names, ", "))
	if cfg.transport == "http" {
		r.narrate("the sessions call the nodes' HTTP fronts (the bookstore's HTTP handlers, their state kept by the cluster's HTTP middleware)")
	}
	r.narrate("%d links through fault proxies; clock skewable on %s", len(r.proxies), strings.Join(r.targets.Skew, ", "))
	if len(r.targets.Gossip) > 0 {
		r.narrate("gossip can be cut off (both ways, from every other member) on %s", strings.Join(r.targets.Gossip, ", "))
	}
	schedule := chaos.NewSchedule(cfg.seed, r.targets, cfg.duration, cfg.every)
	r.narrate("%d faults scheduled over %v, one at a time; %d sessions start", len(schedule), cfg.duration, cfg.sessions)

	r.hist = chaos.NewHistory()
	r.t0 = time.Now()
	sessions, closeConn, err := r.newSessions()
	if err != nil {
		return r.fail(err)
	}
	defer closeConn()
	runCtx, stop := context.WithTimeout(ctx, cfg.duration)
	defer stop()
	var wg sync.WaitGroup
	for _, s := range sessions {
		wg.Go(func() { s.loop(runCtx) })
	}
	wg.Go(func() { r.nemesis(runCtx, schedule) })
	wg.Go(func() { r.rotateKeys(runCtx) })
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	var final []string
	r.narrate("faults over: every process up, every link healed, every clock right")
	if err := r.healAll(ctx); err != nil {
		final = append(final, "the system did not come back after the faults: "+err.Error())
	}
	for _, s := range sessions {
		wg.Go(func() { s.finalRead(ctx) })
	}
	wg.Wait()
	if r.mode.final != nil {
		final = append(final, r.mode.final(ctx, r)...)
	}
	r.close() // the processes are done with; their logs stay
	return r.report(final)
}

// healAll restarts what is down and waits for the system to settle.
func (r *chaosRun) healAll(ctx context.Context) error {
	for _, p := range r.proxies {
		p.Heal()
		p.SetLatency(0)
	}
	for _, c := range r.clocks {
		c.set(0)
	}
	for name := range r.gossip {
		r.blockGossip(name, nil)
	}
	var errs []error
	for _, p := range r.procs {
		p.pause(false)
		if !p.up() {
			if err := p.start(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if r.mode.settle != nil {
		errs = append(errs, r.mode.settle(ctx, r, time.Minute))
	}
	return errors.Join(errs...)
}

// fail keeps the logs of a run that could not start, and returns err.
func (r *chaosRun) fail(err error) error {
	if dir, cerr := r.keepLogs(); cerr == nil {
		return fmt.Errorf("%w (logs in %s)", err, dir)
	}
	return err
}

// keepLogs copies the processes' logs to the --out folder.
func (r *chaosRun) keepLogs() (string, error) {
	dir := filepath.Join(r.cfg.out, "logs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	for _, p := range r.procs {
		b, err := os.ReadFile(p.logPath)
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(p.logPath)), b, 0o644); err != nil {
			return "", err
		}
	}
	return r.cfg.out, nil
}

func (r *chaosRun) report(final []string) error {
	cfg := r.cfg
	ops := r.hist.Ops()
	r.narrate("checking %d operations of %d sessions (porcupine, per session)", len(ops), cfg.sessions)
	rep := chaos.Check(chaos.Cart{MaxPerTitle: shop.MaxPerTitle}, ops, r.settle(), cfg.check)
	retired := r.retirements()
	violations := append(rep.Violations, chaos.CheckRetired(ops, retired)...)
	violations = append(violations, final...)
	noReply := 0
	for _, op := range ops {
		if op.NoReply {
			noReply++
		}
	}
	r.mu.Lock()
	var kinds []string
	total := 0
	for _, k := range []chaos.FaultKind{chaos.Kill, chaos.Pause, chaos.Partition, chaos.Latency, chaos.Skew} {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, r.faults[k]))
		if k == chaos.Partition && len(r.targets.Gossip) > 0 {
			kinds[len(kinds)-1] += fmt.Sprintf(" (%d of gossip)", r.gossipCuts)
		}
		total += r.faults[k]
	}
	skipped, restarts, rotations := r.skipped, slices.Sorted(slices.Values(r.restarts)), r.rotations
	r.mu.Unlock()
	out := chaos.Outages(ops)
	r.say("operations: %d (ok %d, refused by the shop's rules %d, failed with nothing changed %d, outcome unknown %d); %d calls got no reply (timeout or connection died)",
		rep.Ops, rep.OK, rep.Refused, rep.Failed, rep.Unknown, noReply)
	r.say("failed calls by status: %s", failedByStatus(ops))
	r.say("faults: %d (%s); %d skipped (the system had not settled)", total, strings.Join(kinds, ", "), skipped)
	r.say("keys: %d rotations, %d SCONEs of a retired key refused (unknown_key)", rotations, failedWith(ops, scone.CodeUnknownKey))
	r.say("restarts: %d, ready after p50 %v, max %v", len(restarts), chaos.Quantile(restarts, 0.5).Round(time.Millisecond), chaos.Quantile(restarts, 1).Round(time.Millisecond))
	r.say("sessions without progress: %d stretches, p50 %v, p99 %v, max %v", len(out),
		chaos.Quantile(out, 0.5).Round(time.Millisecond), chaos.Quantile(out, 0.99).Round(time.Millisecond), chaos.Quantile(out, 1).Round(time.Millisecond))
	if len(rep.Unchecked) > 0 {
		r.say("NOT CHECKED: the linearizability search of sessions %v ran out of time (--check-timeout)", rep.Unchecked)
	}
	for i, v := range violations {
		if i == 20 {
			r.say("... and %d more", len(violations)-20)
			break
		}
		r.say("VIOLATION %s", v)
	}
	if len(violations) > 0 || len(rep.Unchecked) > 0 {
		if dir, err := r.writeEvidence(rep, ops, violations); err != nil {
			r.say("writing the evidence: %v", err)
		} else {
			r.say("evidence (porcupine's HTML view, the history, the processes' logs) in %s", dir)
		}
	}
	fmt.Fprintf(r.out, "chaos: mode=%s ops=%d faults=%d unknown=%d violations=%d seed=%d\n",
		cfg.mode, len(ops), total, noReply, len(violations), cfg.seed)
	switch {
	case len(violations) > 0:
		return fmt.Errorf("%d violations", len(violations))
	case len(rep.Unchecked) > 0:
		// Not a violation, and not a pass either: raise --check-timeout.
		return fmt.Errorf("the histories of sessions %v were not checked in time", rep.Unchecked)
	}
	return nil
}

// writeEvidence writes what a violation needs to be understood to --out.
func (r *chaosRun) writeEvidence(rep chaos.Report, ops []chaos.Op, violations []string) (string, error) {
	dir, err := r.keepLogs()
	if err != nil {
		return "", err
	}
	if _, err := rep.Visualize(dir); err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "sconelab chaos --mode=%s --transport=%s --seed=%d --duration=%v --sessions=%d\n\n", r.cfg.mode, r.cfg.transport, r.cfg.seed, r.cfg.duration, r.cfg.sessions)
	for _, v := range violations {
		fmt.Fprintf(&b, "VIOLATION %s\n", v)
	}
	if len(rep.Unchecked) > 0 {
		fmt.Fprintf(&b, "NOT CHECKED sessions %v: the linearizability search ran out of time (--check-timeout)\n", rep.Unchecked)
	}
	b.WriteString("\nsession invoke return outcome op result\n")
	slices.SortStableFunc(ops, func(a, b chaos.Op) int {
		if a.Session != b.Session {
			return a.Session - b.Session
		}
		return int(a.Invoke - b.Invoke)
	})
	for _, op := range ops {
		fmt.Fprintf(&b, "%d %v %v %s %s %s×%d items=%v reserved=%d changes=%d via=%s %s\n", op.Session, op.Invoke, op.Return,
			op.Outcome, op.Input.Kind, op.Input.ISBN, op.Input.Qty, op.Items, op.Reserved, op.Changes, op.Served, op.Err)
	}
	return dir, os.WriteFile(filepath.Join(dir, "history.txt"), []byte(b.String()), 0o644)
}

// failedByStatus counts the calls that failed (other than the shop's
// refusals) by status, and SCONE code if any.
func failedByStatus(ops []chaos.Op) string {
	n := map[string]int{}
	for _, op := range ops {
		if op.Outcome == chaos.Failed || op.Outcome == chaos.Unknown {
			code, _, _ := strings.Cut(op.Err, ":")
			n[code]++
		}
	}
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%s %d", code, n[code]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// failedWith counts the calls that failed with the SCONE code c.
func failedWith(ops []chaos.Op, c scone.Code) int {
	n := 0
	for _, op := range ops {
		if op.Outcome != chaos.OK && strings.Contains(op.Err, " ("+c.String()+"):") {
			n++
		}
	}
	return n
}

// changed returns how many sessions have made an acknowledged change.
func (r *chaosRun) changed() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.changers)
}

// settle bounds how long after its invocation a call may still take
// effect: held by a fault (a partition, a pause: at most 1.25 times
// --fault-every) and then served within its deadline (--call-timeout, which
// a server counts from the request's arrival), with 2 s to spare.
func (r *chaosRun) settle() time.Duration {
	return r.cfg.every*5/4 + r.cfg.timeout + 2*time.Second
}
