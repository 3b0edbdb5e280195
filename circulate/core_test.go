package circulate

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/scone-project/scone/circulate/circulatepb"
	"github.com/scone-project/scone/internal/membership"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the scenarios under testdata/")

// TestScenarios replays the scenarios under testdata/*.txt against the
// rules, in the style of etcd-io/raft's data-driven tests: each file is a
// list of commands, each followed by a line "----" and the output it must
// give, up to a blank line. A small simulated group of relays (sim) carries
// out what the rules decide, the script choosing what the network delivers,
// holds up or loses, and how time passes: no goroutine, socket or clock.
// Run with -rewrite to write the outputs the rules give now (then read the
// diff).
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenario: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			t.Parallel()
			runScenario(t, f)
		})
	}
}

// step of a scenario: a command and the output it must give.
type scenarioStep struct {
	pos    string
	before []string // comments and blank lines before the command
	cmd    string
	want   string
}

func parseScenario(t *testing.T, path string) []scenarioStep {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var steps []scenarioStep
	var before []string
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			before = append(before, l)
			continue
		}
		st := scenarioStep{pos: fmt.Sprintf("%s:%d", path, line), before: before, cmd: l}
		before = nil
		if !sc.Scan() || sc.Text() != "----" {
			t.Fatalf("%s: a command without its ---- line", st.pos)
		}
		line++
		var out []string
		for sc.Scan() {
			line++
			if sc.Text() == "" {
				break
			}
			out = append(out, sc.Text())
		}
		st.want = strings.Join(out, "\n")
		steps = append(steps, st)
	}
	return steps
}

func runScenario(t *testing.T, path string) {
	steps := parseScenario(t, path)
	s := newSim()
	var b strings.Builder
	for _, st := range steps {
		got := strings.TrimRight(s.run(t, st.pos, st.cmd), "\n")
		if got == "" {
			got = "ok"
		}
		if *rewrite {
			for _, l := range st.before {
				b.WriteString(l + "\n")
			}
			fmt.Fprintf(&b, "%s\n----\n%s\n\n", st.cmd, got)
			continue
		}
		if got != st.want {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", st.pos, st.cmd, got, st.want)
		}
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(strings.TrimRight(b.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// sim is a group of relays driven by the rules alone.
type sim struct {
	rules  rules // the group's settings; self is set per relay
	now    time.Time
	mono   time.Time
	relays map[string]*simRelay
	held   []heldPut // puts held up in the network
}

type simRelay struct {
	name     string
	members  []string
	joined   map[string]time.Time
	departed map[string]time.Time
	slots    map[string]*slotState
	offset   time.Duration // how far its Store clock (Now less MaxClockSkew) is off
	down     bool          // answers no call (killed or paused)
	leaving  bool          // hands its copies on to the others, takes none (Store.Leave)
}

type heldPut struct {
	from, to string
	mode     pb.PutRequest_Mode
	it       *item
	base     uint64
	view     uint64
}

func newSim() *sim {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	return &sim{now: t0, mono: t0, relays: map[string]*simRelay{},
		rules: rules{copies: 2, dwell: 100 * time.Millisecond, lease: 300 * time.Millisecond, settle: 3 * time.Second}}
}

func (s *sim) rulesOf(r *simRelay) rules { x := s.rules; x.self = r.name; return x }

func (s *sim) clock(r *simRelay) time.Time { return s.now.Add(r.offset) }

func (s *sim) know(r *simRelay) knowledge {
	k := knowledge{members: slices.Clone(r.members), joined: map[string]time.Time{}, departed: map[string]time.Time{}}
	for m, at := range r.joined {
		k.joined[m] = at
	}
	for m, at := range r.departed {
		k.departed[m] = at
	}
	if r.leaving {
		k.members = slices.DeleteFunc(k.members, func(m string) bool { return m == r.name })
	}
	return k
}

func (s *sim) hash(r *simRelay) uint64 { return membership.NewView(r.members).Hash }

func (s *sim) slot(r *simRelay, key string) *slotState {
	st := r.slots[key]
	if st == nil {
		st = &slotState{}
		r.slots[key] = st
	}
	return st
}

// args parses "k=v" words (a bare word is k=true).
type args map[string]string

func parseArgs(words []string) args {
	a := args{}
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			v = "true"
		}
		a[k] = v
	}
	return a
}

func (a args) list(k string) []string {
	if a[k] == "" {
		return nil
	}
	return strings.Split(a[k], ",")
}

func (a args) dur(t *testing.T, k string, def time.Duration) time.Duration {
	if a[k] == "" {
		return def
	}
	d, err := time.ParseDuration(a[k])
	if err != nil {
		t.Fatalf("%s=%s: %v", k, a[k], err)
	}
	return d
}

func (a args) num(t *testing.T, k string) uint64 {
	if a[k] == "" {
		return 0
	}
	n, err := strconv.ParseUint(a[k], 10, 64)
	if err != nil {
		t.Fatalf("%s=%s: %v", k, a[k], err)
	}
	return n
}

func (s *sim) relay(t *testing.T, pos, name string) *simRelay {
	r := s.relays[name]
	if r == nil {
		t.Fatalf("%s: no relay %q", pos, name)
	}
	return r
}

// run carries out one command and returns its output.
func (s *sim) run(t *testing.T, pos, line string) string {
	t.Helper()
	words := strings.Fields(line)
	a := parseArgs(words[1:])
	var out strings.Builder
	switch words[0] {
	case "relays":
		// relays names=a,b,c [copies=2 dwell=… lease=… settle=…]
		if a["copies"] != "" {
			s.rules.copies = int(a.num(t, "copies"))
		}
		s.rules.dwell = a.dur(t, "dwell", s.rules.dwell)
		s.rules.lease = a.dur(t, "lease", s.rules.lease)
		s.rules.settle = a.dur(t, "settle", s.rules.settle)
		names := a.list("names")
		slices.Sort(names)
		for _, n := range names {
			r := &simRelay{name: n, members: slices.Clone(names), joined: map[string]time.Time{},
				departed: map[string]time.Time{}, slots: map[string]*slotState{}}
			for _, m := range names {
				r.joined[m] = s.now.Add(-time.Hour)
			}
			s.relays[n] = r
		}
	case "tick":
		// tick <duration>: time passes for every relay
		d, err := time.ParseDuration(words[1])
		if err != nil {
			t.Fatalf("%s: %v", pos, err)
		}
		s.now, s.mono = s.now.Add(d), s.mono.Add(d)
	case "clock":
		// clock at=r offset=<d>: r's Store clock is off by offset
		s.relay(t, pos, a["at"]).offset = a.dur(t, "offset", 0)
	case "copy":
		// copy at=r key=k gen=g hop=h holders=a,b [committed] [held=<d>] [expires=<d>]
		r := s.relay(t, pos, a["at"])
		it := &item{key: a["key"], gen: a.num(t, "gen"), hop: a.num(t, "hop"), holders: a.list("holders"),
			scones: [][]byte{[]byte("scone")}, since: s.clock(r).Add(-a.dur(t, "held", 0)),
			expires: s.now.Add(a.dur(t, "expires", time.Hour))}
		if a["committed"] != "" {
			it.committed = s.mono.Add(-a.dur(t, "held", 0))
		}
		s.slot(r, it.key).it = it
	case "gone":
		// gone at=r who=x: r sees x leave the group (at=all: every other relay)
		for _, r := range s.targets(t, pos, a["at"], a["who"]) {
			r.members = slices.DeleteFunc(r.members, func(m string) bool { return m == a["who"] })
			delete(r.joined, a["who"])
			r.departed[a["who"]] = s.mono
		}
	case "up":
		// up at=r who=x: r sees x come up (again); it restarted if it was gone
		for _, r := range s.targets(t, pos, a["at"], a["who"]) {
			if !slices.Contains(r.members, a["who"]) {
				r.members = append(r.members, a["who"])
				slices.Sort(r.members)
				r.joined[a["who"]] = s.clock(r)
			}
		}
	case "leave":
		// leave who=x: x starts leaving: it places copies on the others
		// alone and refuses hand-offs, still a member for every relay
		s.relay(t, pos, a["who"]).leaving = true
	case "down", "wake":
		// down who=x: x answers nothing (paused or killed); wake who=x: it answers again
		s.relay(t, pos, a["who"]).down = words[0] == "down"
	case "kill":
		// kill who=x: x stops and loses its copies
		r := s.relay(t, pos, a["who"])
		r.down, r.slots = true, map[string]*slotState{}
	case "next":
		// next at=r key=k: what r's loop does with its copy
		r := s.relay(t, pos, a["at"])
		it := s.slot(r, a["key"]).it
		if it == nil {
			return "no copy"
		}
		return s.rulesOf(r).next(s.know(r), it, s.clock(r), s.mono).String()
	case "get":
		return s.get(s.relay(t, pos, a["at"]), a["key"])
	case "handoff":
		// handoff at=r key=k [hold=x,y] [force]
		return s.handoff(s.relay(t, pos, a["at"]), a["key"], a.list("hold"), a["force"] != "")
	case "write":
		// write at=r key=k [create] [hold=x]
		return s.write(s.relay(t, pos, a["at"]), a["key"], a["create"] != "", a.list("hold"))
	case "check":
		return s.check(s.relay(t, pos, a["at"]), a["key"])
	case "deliver":
		// deliver: the puts held up in the network land now
		held := s.held
		s.held = nil
		for _, p := range held {
			to := s.relays[p.to]
			if to.down {
				s.held = append(s.held, p)
				fmt.Fprintf(&out, "%s → %s: still held\n", p.from, p.to)
				continue
			}
			fmt.Fprintf(&out, "%s → %s: %s\n", p.from, p.to, s.putAt(to, p.mode, p.it, p.base, p.view))
		}
	case "moves":
		// moves at=r: whether r's copies move from relay to relay
		r := s.relay(t, pos, a["at"])
		return strconv.FormatBool(s.rulesOf(r).moves(s.know(r)))
	case "state":
		return s.state()
	default:
		t.Fatalf("%s: unknown command %q", pos, words[0])
	}
	return out.String()
}

// targets returns relay at (all: every relay but who).
func (s *sim) targets(t *testing.T, pos, at, who string) []*simRelay {
	if at != "all" {
		return []*simRelay{s.relay(t, pos, at)}
	}
	var out []*simRelay
	for _, n := range s.names() {
		if n != who {
			out = append(out, s.relays[n])
		}
	}
	return out
}

func (s *sim) names() []string {
	var out []string
	for n := range s.relays {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func describe(it *item) string {
	if it == nil {
		return "none"
	}
	d := fmt.Sprintf("gen=%d hop=%d holders=%s", it.gen, it.hop, strings.Join(it.holders, ","))
	if !it.committed.IsZero() {
		d += " committed"
	}
	if it.written {
		d += " written"
	}
	return d
}

// query asks relay name for key's copy, as r would.
func (s *sim) query(r *simRelay, name, key string) answer {
	a := answer{member: name}
	o := s.relays[name]
	switch {
	case o == nil || o.down:
		a.err = errors.New("no answer")
		return a
	case membership.NewView(o.members).Refuses(s.hash(r)):
		a.err = errViewsDiffer
		return a
	}
	st := s.slot(o, key)
	a.movedTo = st.movedTo
	if live(st.it, s.clock(o)) {
		c := *st.it
		c.since, c.committed, c.written, c.prev = s.clock(r), time.Time{}, false, nil
		a.it, a.age = &c, s.clock(o).Sub(st.it.since)
	}
	return a
}

func (s *sim) get(r *simRelay, key string) string {
	ru := s.rulesOf(r)
	local := s.slot(r, key).it
	k := s.know(r)
	switch alone, err := ru.read(k, local, s.clock(r), s.mono); {
	case err != nil:
		return "unavailable: " + err.Error()
	case alone:
		return "local " + describe(local)
	}
	var answers []answer
	for _, m := range k.members {
		if m != r.name {
			answers = append(answers, s.query(r, m, key))
		}
	}
	best, missing := newest(answers, s.clock(r))
	if best == nil && missing == 0 {
		if moved := ru.movedTo(answers); len(moved) > 0 {
			var again []answer
			for _, m := range moved {
				again = append(again, s.query(r, m, key))
			}
			best, missing = newest(again, s.clock(r))
		}
	}
	best, err := ru.pick(best, missing, local, s.clock(r))
	switch {
	case err != nil:
		return "unavailable: " + err.Error()
	case best == nil:
		return "new"
	}
	return "found " + describe(best)
}

// putAt runs a Put on relay to, sent with view hash view.
func (s *sim) putAt(to *simRelay, mode pb.PutRequest_Mode, it *item, base uint64, view uint64) string {
	if mode == pb.PutRequest_HANDOFF && to.leaving {
		return "views differ" // as peerServer.Put
	}
	in := *it
	in.since, in.committed, in.written, in.prev = s.clock(to), time.Time{}, false, nil
	st := s.slot(to, it.key)
	res := s.rulesOf(to).put(mode, st.it, &in, base, membership.NewView(to.members).Refuses(view), s.clock(to))
	switch {
	case res.err != nil:
		return "error: " + res.err.Error()
	case res.set:
		old := st.movedTo
		*st = slotState{it: res.it}
		if res.it == nil {
			st.movedTo = old
		}
	}
	switch r := res.reply; {
	case r.Ok:
		return "ok"
	case r.ViewsDiffer:
		return "views differ"
	}
	return fmt.Sprintf("refused age=%v", time.Duration(res.reply.AgeMs)*time.Millisecond)
}

// putAll sends puts from r; a relay in hold gets it later (deliver), and
// r sees no answer.
func (s *sim) putAll(r *simRelay, to []string, mode pb.PutRequest_Mode, it *item, base uint64, hold []string, out *strings.Builder) (took []string, refused *time.Duration, failed error) {
	for _, m := range to {
		o := s.relays[m]
		if !slices.Contains(r.members, m) {
			// Not live in r's view: r has no connection to it.
			fmt.Fprintf(out, "put %v → %s: not sent\n", mode, m)
			failed = errors.Join(failed, errNotSent)
			continue
		}
		if slices.Contains(hold, m) || o == nil || o.down {
			if o != nil {
				s.held = append(s.held, heldPut{from: r.name, to: m, mode: mode, it: it, base: base, view: s.hash(r)})
			}
			fmt.Fprintf(out, "put %v → %s: no answer\n", mode, m)
			failed = errors.Join(failed, errors.New("no answer"))
			continue
		}
		res := s.putAt(o, mode, it, base, s.hash(r))
		fmt.Fprintf(out, "put %v → %s: %s\n", mode, m, res)
		switch {
		case res == "ok":
			took = append(took, m)
		case strings.HasPrefix(res, "error: "+errNotTaken.Error()):
			failed = errors.Join(failed, errNotTaken) // as Store.put
		case strings.HasPrefix(res, "error"):
			failed = errors.Join(failed, errors.New(res))
		default:
			age := time.Duration(0)
			if _, a, ok := strings.Cut(res, "age="); ok {
				age, _ = time.ParseDuration(a)
			}
			if refused == nil || age < *refused {
				refused = &age
			}
		}
	}
	return took, refused, failed
}

func (s *sim) handoff(r *simRelay, key string, hold []string, force bool) string {
	var out strings.Builder
	ru, k := s.rulesOf(r), s.know(r)
	st := s.slot(r, key)
	it := st.it
	if !live(it, s.clock(r)) || !force && !ru.actingPrimary(k, it) {
		return "not moved: not the acting primary, or no live copy"
	}
	next := ru.handoff(k, it)
	if len(next.holders) == 0 {
		return "not moved: alone"
	}
	fmt.Fprintf(&out, "next: %s\n", describe(next))
	it = ru.handingOff(it)
	st.it = it
	took, refused, failed := s.putAll(r, ru.remote(next), pb.PutRequest_HANDOFF, next, 0, hold, &out)
	res := ru.handedOff(it, next, took, refused, failed != nil, s.clock(r), s.mono)
	if len(res.undo) > 0 {
		s.putAll(r, res.undo, pb.PutRequest_UNDO, next, 0, nil, &out)
	}
	for _, m := range res.retire {
		if o := s.relays[m]; o != nil && !o.down {
			ost := s.slot(o, key)
			if retires(ost.it, it.gen, it.hop) {
				*ost = slotState{movedTo: next.primary()}
				fmt.Fprintf(&out, "retired on %s\n", m)
			}
		}
	}
	switch {
	case res.keep != nil && res.outcome == "ok":
		*st = slotState{it: res.keep}
	case res.keep == nil:
		*st = slotState{movedTo: res.moved}
	}
	fmt.Fprintf(&out, "%s; %s keeps %s", res.outcome, r.name, describe(st.it))
	return out.String()
}

func (s *sim) write(r *simRelay, key string, create bool, hold []string) string {
	var out strings.Builder
	ru := s.rulesOf(r)
	rt := ru.routeWrite(s.know(r), s.slot(r, key), create, s.clock(r))
	switch {
	case rt.forward != "":
		return "forward to " + rt.forward
	case rt.err != nil:
		return "failed: " + rt.err.Error()
	}
	next := &item{key: key, gen: 1, since: s.clock(r), scones: [][]byte{[]byte("scone")}, expires: s.now.Add(time.Hour)}
	mode, base := pb.PutRequest_HANDOFF, uint64(0)
	if cur := rt.cur; cur != nil {
		next.gen, next.hop, next.holders, base = cur.gen+1, cur.hop, cur.holders, cur.gen
		mode = pb.PutRequest_UPDATE
	} else {
		next.holders = ru.holdersFor(s.know(r), key)
	}
	if len(next.holders) < ru.copies {
		return fmt.Sprintf("unavailable: %d relays live, fewer than %d copies", len(next.holders), ru.copies)
	}
	took, refused, failed := s.putAll(r, next.holders[1:], mode, next, base, hold, &out)
	var conflict error
	if refused != nil {
		conflict = errRefused
	}
	undone := true
	if conflict != nil || failed != nil {
		_, _, undoFailed := s.putAll(r, took, pb.PutRequest_UNDO, next, 0, nil, &out)
		undone = undoFailed == nil
	}
	if err := written(conflict, failed, undone); err != nil {
		fmt.Fprintf(&out, "failed: %v", err)
		return out.String()
	}
	next.committed, next.written = s.mono, true
	*s.slot(r, key) = slotState{it: next}
	fmt.Fprintf(&out, "written %s", describe(next))
	return out.String()
}

func (s *sim) check(r *simRelay, key string) string {
	it := s.slot(r, key).it
	if it == nil {
		return "no copy"
	}
	a := s.query(r, it.primary(), key)
	if a.err == nil && a.it == nil && a.movedTo != "" && a.movedTo != r.name {
		a = s.query(r, a.movedTo, key)
	}
	v := s.rulesOf(r).check(it, a)
	switch v {
	case checkLeftOver:
		*s.slot(r, key) = slotState{movedTo: a.member}
	case checkHandoff:
		return "handoff\n" + s.handoff(r, key, nil, true)
	}
	return v.String()
}

func (s *sim) state() string {
	var out strings.Builder
	for _, n := range s.names() {
		r := s.relays[n]
		var keys []string
		for k := range r.slots {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		fmt.Fprintf(&out, "%s: members=%s", n, strings.Join(r.members, ","))
		if r.down {
			out.WriteString(" down")
		}
		out.WriteString("\n")
		for _, k := range keys {
			st := r.slots[k]
			switch {
			case st.it != nil:
				fmt.Fprintf(&out, "  %s: %s\n", k, describe(st.it))
			case st.movedTo != "":
				fmt.Fprintf(&out, "  %s: moved to %s\n", k, st.movedTo)
			}
		}
	}
	return out.String()
}
