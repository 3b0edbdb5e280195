package cluster

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected outputs of testdata/core/*.txt")

// TestCoreScenarios runs the scenarios in testdata/core: each drives the
// cluster's decisions (core.go) and the nodes' stores step by step, with
// the network and the clock in the script's hands, and checks what each
// step sends to whom, how calls end, and what the nodes hold. No socket,
// goroutine or wall clock is involved.
//
// A scenario file is a list of steps, each a command line, a line "----",
// and the output expected, up to a blank line; lines starting with # are
// comments. go test -run TestCoreScenarios -rewrite writes the outputs the
// code gives (review the diff). The commands:
//
//	cluster nodes=A,B,… k=K lease=D [settle=W] [degrade]
//	                                            nodes that all see each other; reads
//	                                            ask every member for W after a view
//	                                            change (readFrom; default 0)
//	owners key=KEY [of=NODE]                    a key's owners in NODE's view
//	tick D                                      the clock moves on by D
//	gone node=N [seen-by=A,…]                   they declare N dead (default: all others)
//	up node=N [seen-by=A,…]                     they see N (back) as a member
//	pause node=N / resume node=N                N answers nothing while paused
//	ping from=A [to=B,…]                        A calls B…; each answer with A's view agrees
//	write from=A key=KEY base=V                 A starts writing version V+1, made from V
//	deliver from=A to=B [op=store|undo]         the oldest message from A to B arrives
//	timeout from=A to=B                         A gives up on B (the message stays in flight)
//	read from=A key=KEY                         A reads the record (its own copy if it may)
//	repair node=A                               one repair pass on A
//	held                                        what each node holds
func TestCoreScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/core/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			t.Parallel()
			runScenario(t, file)
		})
	}
}

// runScenario runs one scenario file, and rewrites its outputs if asked.
func runScenario(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	var out []string // the file as rewritten
	s := &sim{}
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out = append(out, line)
			continue
		}
		cmd := line
		pos := fmt.Sprintf("%s:%d", file, i+1)
		if i+1 >= len(lines) || lines[i+1] != "----" {
			t.Fatalf("%s: %q has no ---- line after it", pos, cmd)
		}
		i += 2
		var want []string
		for ; i < len(lines) && lines[i] != ""; i++ {
			want = append(want, lines[i])
		}
		got, err := s.run(cmd)
		if err != nil {
			if !*rewrite {
				t.Fatalf("%s: %s: %v", pos, cmd, err)
			}
			t.Errorf("%s: %s: %v", pos, cmd, err)
			got = []string{"error: " + err.Error()}
		}
		out = append(out, cmd, "----")
		out = append(out, got...)
		if i < len(lines) {
			out = append(out, "")
		}
		if !*rewrite && !slices.Equal(got, want) {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", pos, cmd, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(strings.Join(out, "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// sim is a cluster as the decisions see it: each node's view of the
// members, the members it saw leave, its agreements with the others and
// its store; messages in flight; one clock.
type sim struct {
	start, now time.Time
	k          int
	lease      time.Duration
	settle     time.Duration // the settle window of reads (readFrom)
	degrade    bool
	nodes      map[string]*simNode
	names      []string
	inflight   []*simMsg
	writes     int // writes started
}

type simNode struct {
	name    string
	view    []string // sorted
	gone    map[string]time.Time
	gen     uint64    // membership changes seen
	changed time.Time // when its view last changed
	agreed  map[string]agreement
	store   *store
	paused  bool
	round   *simWrite // the write it is making, if any
}

// simWrite is a write a node is making.
type simWrite struct {
	w      *writeRound
	rec    *Record
	base   uint64
	owners []string
	gen    uint64
	view   []string // the writer's view when it started
	// waiting are the owners whose answer (to the write, then to the undo)
	// the writer still waits for.
	waiting map[string]bool
	undoing bool
}

// simMsg is a store or undo operation on its way from one node to another.
type simMsg struct {
	from, to string
	op       string // "store" or "undo"
	rec      *Record
	base     uint64
	view     []string // the sender's view when it sent it
	sent     time.Time
	round    *simWrite
}

func (s *sim) run(line string) ([]string, error) {
	fields := strings.Fields(line)
	cmd, args := fields[0], map[string]string{}
	var bare []string
	for _, f := range fields[1:] {
		if k, v, ok := strings.Cut(f, "="); ok {
			args[k] = v
		} else {
			bare = append(bare, f)
		}
	}
	if cmd != "cluster" && s.nodes == nil {
		return nil, fmt.Errorf("no cluster yet")
	}
	node := func(key string) (*simNode, error) {
		n := s.nodes[args[key]]
		if n == nil {
			return nil, fmt.Errorf("%s=%q: no such node", key, args[key])
		}
		return n, nil
	}
	switch cmd {
	case "cluster":
		return s.cluster(args, bare)
	case "owners":
		of := s.nodes[s.names[0]]
		if args["of"] != "" {
			var err error
			if of, err = node("of"); err != nil {
				return nil, err
			}
		}
		return []string{fmt.Sprintf("%s: %s", args["key"], strings.Join(Owners(args["key"], of.view, s.k), " "))}, nil
	case "tick":
		if len(bare) != 1 {
			return nil, fmt.Errorf("tick D")
		}
		d, err := time.ParseDuration(bare[0])
		if err != nil {
			return nil, err
		}
		s.now = s.now.Add(d)
		return []string{"t=" + s.now.Sub(s.start).String()}, nil
	case "gone", "up":
		n, err := node("node")
		if err != nil {
			return nil, err
		}
		return s.membership(n, cmd == "up", args["seen-by"])
	case "pause", "resume":
		n, err := node("node")
		if err != nil {
			return nil, err
		}
		n.paused = cmd == "pause"
		return []string{fmt.Sprintf("%s %sd", n.name, cmd)}, nil
	case "ping":
		n, err := node("from")
		if err != nil {
			return nil, err
		}
		return s.ping(n, args["to"]), nil
	case "write":
		n, err := node("from")
		if err != nil {
			return nil, err
		}
		var base uint64
		fmt.Sscan(args["base"], &base)
		return s.write(n, args["key"], base)
	case "deliver", "timeout":
		from, err := node("from")
		if err != nil {
			return nil, err
		}
		to, err := node("to")
		if err != nil {
			return nil, err
		}
		if cmd == "timeout" {
			return s.timeout(from, to)
		}
		return s.deliver(from, to, args["op"])
	case "read":
		n, err := node("from")
		if err != nil {
			return nil, err
		}
		return s.read(n, args["key"]), nil
	case "repair":
		n, err := node("node")
		if err != nil {
			return nil, err
		}
		return s.repair(n), nil
	case "held":
		return s.held(), nil
	}
	return nil, fmt.Errorf("unknown command %q", cmd)
}

func (s *sim) cluster(args map[string]string, bare []string) ([]string, error) {
	s.start = time.Unix(1_000_000, 0)
	s.now = s.start
	s.k = 2
	if args["k"] != "" {
		fmt.Sscan(args["k"], &s.k)
	}
	lease, err := time.ParseDuration(args["lease"])
	if err != nil {
		return nil, err
	}
	s.lease, s.degrade = lease, slices.Contains(bare, "degrade")
	s.settle = 0
	if args["settle"] != "" {
		if s.settle, err = time.ParseDuration(args["settle"]); err != nil {
			return nil, err
		}
	}
	s.names = strings.Split(args["nodes"], ",")
	s.nodes = map[string]*simNode{}
	for _, name := range s.names {
		s.nodes[name] = &simNode{
			name: name, view: slices.Sorted(slices.Values(s.names)),
			gone: map[string]time.Time{}, agreed: map[string]agreement{}, store: newStore(),
		}
	}
	out := fmt.Sprintf("%d nodes, k=%d, lease %v, degrade %v", len(s.names), s.k, s.lease, s.degrade)
	if s.settle > 0 {
		out += fmt.Sprintf(", settle %v", s.settle)
	}
	return []string{out}, nil
}

// seers returns the nodes named in list (a,b,…), or all but except.
func (s *sim) seers(list, except string) []*simNode {
	var out []*simNode
	for _, name := range s.names {
		if list == "" && name != except || slices.Contains(strings.Split(list, ","), name) {
			out = append(out, s.nodes[name])
		}
	}
	return out
}

// membership makes nodes see name leave or come back, as memberGone and
// memberUp do.
func (s *sim) membership(n *simNode, up bool, seenBy string) ([]string, error) {
	var out []string
	for _, o := range s.seers(seenBy, n.name) {
		if up {
			if !slices.Contains(o.view, n.name) {
				o.view = slices.Sorted(slices.Values(append(slices.Clone(o.view), n.name)))
			}
		} else {
			o.view = slices.DeleteFunc(slices.Clone(o.view), func(m string) bool { return m == n.name })
			o.gone[n.name] = s.now
		}
		o.gen++
		o.changed = s.now
		out = append(out, fmt.Sprintf("%s sees %s", o.name, strings.Join(o.view, " ")))
	}
	return out, nil
}

// settling is Node.settling for n.
func (s *sim) settling(n *simNode, key string, k int) bool {
	return inLease(key, k, n.view, n.gone, s.now, s.lease)
}

// answers reports whether to answers a call from a node with view: it is
// not paused, and sees the same members.
func answers(to *simNode, view []string) (bool, string) {
	switch {
	case to.paused:
		return false, "no answer (paused)"
	case !slices.Equal(to.view, view):
		return false, "refused (views differ)"
	}
	return true, ""
}

func (s *sim) ping(n *simNode, to string) []string {
	var out []string
	for _, o := range n.view {
		if o == n.name || to != "" && !slices.Contains(strings.Split(to, ","), o) {
			continue
		}
		if ok, why := answers(s.nodes[o], n.view); !ok {
			out = append(out, fmt.Sprintf("%s: %s", o, why))
			continue
		}
		s.agree(n, o, s.now)
		out = append(out, fmt.Sprintf("%s: agrees", o))
	}
	return out
}

func (s *sim) agree(n *simNode, o string, sent time.Time) {
	a := n.agreed[o]
	a.observe(sent.UnixNano(), s.lease)
	n.agreed[o] = a
}

// storeAnswer is an owner's answer to a write, and the version it holds.
type storeAnswer struct {
	a    answer
	held uint64
}

// write starts a write by n, as serveState and Node.write do.
func (s *sim) write(n *simNode, key string, base uint64) ([]string, error) {
	if n.round != nil {
		return nil, fmt.Errorf("%s is already writing", n.name)
	}
	owners := Owners(key, n.view, s.k)
	if len(owners) < s.k && (!s.degrade || len(owners) == 0) {
		return []string{fmt.Sprintf("end: unavailable (%d live members, fewer than the %d copies)", len(owners), s.k)}, nil
	}
	if s.settling(n, key, max(len(owners), s.k)) {
		return []string{"end: unavailable (an owner left less than the lease ago)"}, nil
	}
	need := s.k
	if s.degrade {
		need = 1
	}
	// Each write gets its own stamp, and its SCONE names it (node, then
	// the count of writes), so the outputs tell the writes apart.
	s.writes++
	rec := &Record{Key: key, RV: base + 1, Stamp: s.now.UnixNano() + int64(s.writes), Copies: s.k,
		SCONEs: [][]byte{fmt.Appendf(nil, "%s#%d", n.name, s.writes)}}
	r := &simWrite{w: newWriteRound(owners, need, rec.RV), rec: rec, base: base, owners: owners, gen: n.gen,
		view: slices.Clone(n.view), waiting: map[string]bool{}}
	n.round = r
	out := []string{fmt.Sprintf("owners %s, need %d", strings.Join(owners, " "), need)}
	return append(out, s.send(n, "store", r.w.start())...), nil
}

// send sends op of n's write to each of to; n runs its own at once.
func (s *sim) send(n *simNode, op string, to []string) []string {
	var out []string
	r := n.round
	for _, o := range to {
		r.waiting[o] = true
	}
	for _, o := range to {
		if o == n.name {
			out = append(out, fmt.Sprintf("%s %s locally", op, r.rec.Key))
			out = append(out, s.reply(n, o, op, s.local(n, op))...)
			continue
		}
		s.inflight = append(s.inflight, &simMsg{from: n.name, to: o, op: op, rec: r.rec, base: r.base,
			view: slices.Clone(n.view), sent: s.now, round: r})
		out = append(out, fmt.Sprintf("send %s rv=%d to %s", op, r.rec.RV, o))
	}
	return out
}

// local runs op of n's own write on its store (Node.storeOn and undoOn for
// this node: no lease check, the writer made it).
func (s *sim) local(n *simNode, op string) any {
	r := n.round
	if op == "store" {
		v, rv := n.store.put(r.rec, r.base, false)
		return storeAnswer{answerOf(v, nil), rv}
	}
	return n.store.undo(r.rec.Key, r.rec.RV, r.rec.Stamp, s.now).settles(r.rec.RV)
}

// deliver brings the oldest message from one node to another to it, and
// its answer back.
func (s *sim) deliver(from, to *simNode, op string) ([]string, error) {
	i := slices.IndexFunc(s.inflight, func(m *simMsg) bool {
		return m.from == from.name && m.to == to.name && (op == "" || m.op == op)
	})
	if i < 0 {
		return nil, fmt.Errorf("nothing in flight from %s to %s", from.name, to.name)
	}
	if to.paused {
		return nil, fmt.Errorf("%s is paused", to.name)
	}
	m := s.inflight[i]
	s.inflight = slices.Delete(s.inflight, i, i+1)
	var res any
	var out []string
	if !slices.Equal(to.view, m.view) {
		out = append(out, fmt.Sprintf("%s: refused (views differ)", to.name))
		if m.op == "store" {
			res = storeAnswer{refused, 0}
		} else {
			res = false
		}
	} else if m.op == "store" {
		settling := s.settling(to, m.rec.Key, max(1, m.rec.Copies))
		v, rv := serveStore(to.store, m.rec, m.base, false, settling)
		res = storeAnswer{answerOf(v, nil), rv}
		out = append(out, fmt.Sprintf("%s: store rv=%d: %v, holds rv=%d", to.name, m.rec.RV, answerOf(v, nil), rv))
	} else {
		u := to.store.undo(m.rec.Key, m.rec.RV, m.rec.Stamp, s.now)
		res = u.settles(m.rec.RV)
		out = append(out, fmt.Sprintf("%s: undo rv=%d: undone=%v spread=%v fenced=%v held=%d settles=%v",
			to.name, m.rec.RV, u.undone, u.spread, u.fenced, u.held, res))
	}
	if slices.Equal(to.view, m.view) && slices.Equal(from.view, m.view) {
		s.agree(from, to.name, m.sent)
	}
	if from.round != m.round || !m.round.waiting[to.name] || m.round.undoing != (m.op == "undo") {
		return append(out, fmt.Sprintf("%s: the answer comes too late, ignored", from.name)), nil
	}
	return append(out, s.reply(from, to.name, m.op, res)...), nil
}

// timeout makes a node give up on the answer of another.
func (s *sim) timeout(from, to *simNode) ([]string, error) {
	r := from.round
	if r == nil || !r.waiting[to.name] {
		return nil, fmt.Errorf("%s waits for no answer from %s", from.name, to.name)
	}
	op := "store"
	var res any = storeAnswer{silent, 0}
	if r.undoing {
		op, res = "undo", false
	}
	return append([]string{fmt.Sprintf("%s: no answer from %s", from.name, to.name)}, s.reply(from, to.name, op, res)...), nil
}

// reply feeds the answer of owner to op into n's write, and runs the
// write's next steps.
func (s *sim) reply(n *simNode, owner, op string, res any) []string {
	r := n.round
	delete(r.waiting, owner)
	var out []string
	if op == "store" {
		a := res.(storeAnswer)
		out = append(out, s.send(n, "store", r.w.answer(owner, a.a, a.held))...)
		if !r.w.decided || r.undoing || len(r.waiting) > 0 {
			return out
		}
		if r.w.distrust {
			n.store.distrust(r.rec.Key)
		}
		if r.w.outcome != outcomeOK {
			out = append(out, fmt.Sprintf("failed: %s (%s)", r.w.outcome, r.w.reason))
		}
		r.undoing = true
		undos := r.w.undos()
		out = append(out, s.send(n, "undo", undos)...)
	} else {
		r.w.undone(owner, res.(bool))
	}
	if r.undoing && len(r.waiting) == 0 && n.round == r {
		out = append(out, s.end(n)...)
	}
	return out
}

// end ends n's write, as Node.failWrite and serveState do.
func (s *sim) end(n *simNode) []string {
	r := n.round
	n.round = nil
	e := r.w.result()
	if e.outcome != outcomeOK {
		return []string{fmt.Sprintf("end: %s", e.outcome)}
	}
	if e.took == len(r.owners) && len(r.owners) == s.k {
		n.store.commit(r.rec, r.gen, s.now.UnixNano())
		return []string{fmt.Sprintf("end: ok, %d copies, committed", e.took)}
	}
	return []string{fmt.Sprintf("end: ok, %d/%d copies", e.took, s.k)}
}

// read reads key on n, as Node.read does.
func (s *sim) read(n *simNode, key string) []string {
	owners := Owners(key, n.view, s.k)
	rec, gen, at := n.store.getStored(key)
	if trust(n.name, owners, s.degrade, s.lease, stored{rec, gen, at}, n.gen, n.agreed, s.now.UnixNano()) {
		return []string{fmt.Sprintf("%s: rv=%d %s", fetchLocal, rec.RV, rec.SCONEs[0])}
	}
	var found []*Record
	failed := 0
	var out []string
	from := readFrom(key, s.k, n.view, n.changed, s.now, s.settle)
	if len(from) > len(owners) {
		out = append(out, "asks "+strings.Join(from, " ")+" (settle window)")
	}
	for _, o := range from {
		on := s.nodes[o]
		if o != n.name {
			if ok, why := answers(on, n.view); !ok {
				out = append(out, fmt.Sprintf("%s: %s", o, why))
				failed++
				continue
			}
			s.agree(n, o, s.now)
			on.store.distrust(key) // another node serves the client
		}
		found = append(found, on.store.get(key))
	}
	rec, outcome := newest(found, failed)
	if rec == nil {
		return append(out, outcome)
	}
	return append(out, fmt.Sprintf("%s: rv=%d %s", outcome, rec.RV, rec.SCONEs[0]))
}

// repair runs one repair pass on n, as Node.repair does.
func (s *sim) repair(n *simNode) []string {
	var out []string
	keys := n.store.keys()
	slices.Sort(keys)
	for _, key := range keys {
		rec := n.store.get(key)
		plan := PlanRepair(n.name, []string{key}, n.view, max(1, rec.Copies))
		if len(plan) == 0 {
			continue
		}
		a := plan[0]
		if len(a.PushTo) > 0 && !n.store.spreadIf(rec) {
			continue
		}
		failed := 0
		for _, o := range a.PushTo {
			on := s.nodes[o]
			if ok, why := answers(on, n.view); !ok {
				out = append(out, fmt.Sprintf("push %s rv=%d to %s: %s", key, rec.RV, o, why))
				failed++
				continue
			}
			v, _ := serveStore(on.store, rec, 0, true, false)
			out = append(out, fmt.Sprintf("push %s rv=%d to %s: %v", key, rec.RV, o, []string{"accepted", "conflict", "stale"}[v]))
		}
		drop, backlog := a.pushed(failed)
		switch {
		case drop:
			n.store.drop(key, rec)
			out = append(out, fmt.Sprintf("drop %s", key))
		case backlog:
			out = append(out, fmt.Sprintf("backlog %s", key))
		}
	}
	if len(out) == 0 {
		out = append(out, "nothing to do")
	}
	return out
}

// held lists what each node holds.
func (s *sim) held() []string {
	var out []string
	for _, name := range s.names {
		st := s.nodes[name].store
		st.mu.Lock()
		keys := slices.Sorted(func(yield func(string) bool) {
			for k := range st.entries {
				if !yield(k) {
					return
				}
			}
			for k := range st.fences {
				if _, ok := st.entries[k]; !ok && !yield(k) {
					return
				}
			}
		})
		var parts []string
		for _, k := range keys {
			p := k + ":"
			if e := st.entries[k]; e != nil {
				p += fmt.Sprintf(" rv=%d %s", e.cur.RV, e.cur.SCONEs[0])
				if e.at != untrusted {
					p += " committed"
				}
				if e.spread {
					p += " spread"
				}
			}
			for _, f := range st.fences[k] {
				p += fmt.Sprintf(" fence rv=%d", f.rv)
			}
			parts = append(parts, p)
		}
		st.mu.Unlock()
		if len(parts) == 0 {
			parts = []string{"nothing"}
		}
		out = append(out, fmt.Sprintf("%s: %s", name, strings.Join(parts, "; ")))
	}
	return out
}
