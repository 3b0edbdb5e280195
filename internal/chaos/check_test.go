package chaos

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

var cart = Cart{MaxPerTitle: 5}

// ms is a time offset in milliseconds.
func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

func add(s, at int, isbn string, q int32, out Outcome, items map[string]int32, changes uint64) Op {
	return view(Op{Session: s, Input: Input{Kind: Add, ISBN: isbn, Qty: q}, Invoke: ms(at), Return: ms(at + 5), Outcome: out}, items, changes)
}

func get(s, at int, items map[string]int32, changes uint64) Op {
	return view(Op{Session: s, Input: Input{Kind: Get}, Invoke: ms(at), Return: ms(at + 5), Outcome: OK}, items, changes)
}

func view(op Op, items map[string]int32, changes uint64) Op {
	op.Items, op.Changes = items, changes
	for _, q := range items {
		op.Reserved += q
	}
	return op
}

func TestCheck(t *testing.T) {
	a1 := map[string]int32{"a": 1}
	a3 := map[string]int32{"a": 3}
	tests := []struct {
		name    string
		ops     []Op
		illegal bool
	}{
		{"sequential", []Op{add(0, 0, "a", 1, OK, a1, 1), add(0, 10, "a", 2, OK, a3, 2), get(0, 20, a3, 2)}, false},
		{"lost update", []Op{add(0, 0, "a", 1, OK, a1, 1), add(0, 10, "a", 2, OK, a3, 2), get(0, 20, a1, 1)}, true},
		{"stale read", []Op{add(0, 0, "a", 1, OK, a1, 1), get(0, 10, map[string]int32{}, 0)}, true},
		{"unknown not applied", []Op{add(0, 0, "a", 1, OK, a1, 1), add(0, 10, "a", 2, Unknown, nil, 0), get(0, 20, a1, 1)}, false},
		{"unknown applied", []Op{add(0, 0, "a", 1, OK, a1, 1), add(0, 10, "a", 2, Unknown, nil, 0), get(0, 20, a3, 2)}, false},
		{"unknown applied late", []Op{add(0, 0, "a", 1, OK, a1, 1), add(0, 10, "a", 2, Unknown, nil, 0), get(0, 20, a1, 1), get(0, 30, a3, 2)}, false},
		{"unknown applied after a newer change", []Op{add(0, 0, "a", 1, OK, a1, 1), add(0, 10, "a", 2, Unknown, nil, 0), add(0, 20, "b", 1, OK, map[string]int32{"a": 1, "b": 1}, 2), get(0, 30, map[string]int32{"a": 3, "b": 1}, 3)}, false},
		{"unknown applied too late", []Op{add(0, 0, "a", 1, OK, a1, 1), add(0, 10, "a", 2, Unknown, nil, 0), get(0, 120, a1, 1), get(0, 130, a3, 2)}, true},
		{"unknown read left out", []Op{add(0, 0, "a", 1, OK, a1, 1), {Session: 0, Input: Input{Kind: Get}, Invoke: ms(10), Return: ms(15), Outcome: Unknown}, get(0, 20, a1, 1)}, false},
		{"failed applied", []Op{add(0, 0, "a", 1, OK, a1, 1), add(0, 10, "a", 2, Failed, nil, 0), get(0, 20, a3, 2)}, true},
		{"refusal predicted", []Op{add(0, 0, "a", 1, OK, a1, 1), add(0, 10, "a", 5, Refused, nil, 0), get(0, 20, a1, 1)}, false},
		{"refusal not predicted", []Op{add(0, 0, "a", 1, OK, a1, 1), add(0, 10, "a", 2, Refused, nil, 0)}, true},
		{"reservation lost", []Op{add(0, 0, "a", 1, OK, a1, 1), func() Op { o := get(0, 10, a1, 1); o.Reserved = 0; return o }()}, true},
		{"sessions are separate", []Op{add(0, 0, "a", 1, OK, a1, 1), get(1, 10, map[string]int32{}, 0)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := Check(cart, tt.ops, ms(100), 10*time.Second)
			if got := len(r.Illegal) > 0; got != tt.illegal {
				t.Fatalf("illegal=%v, want %v; violations %q", got, tt.illegal, r.Violations)
			}
			if tt.illegal != (len(r.Violations) > 0) {
				t.Fatalf("violations %q", r.Violations)
			}
		})
	}
}

func TestVisualize(t *testing.T) {
	a1 := map[string]int32{"a": 1}
	r := Check(cart, []Op{add(3, 0, "a", 1, OK, a1, 1), get(3, 10, map[string]int32{}, 0)}, ms(100), 10*time.Second)
	files, err := r.Visualize(t.TempDir())
	if err != nil || len(files) != 1 || !strings.HasSuffix(files[0], "session-3.html") {
		t.Fatalf("Visualize: %v, %v", files, err)
	}
	b, err := os.ReadFile(files[0])
	if err != nil || !strings.Contains(string(b), "<html") {
		t.Fatalf("%s: %v, %d bytes", filepath.Base(files[0]), err, len(b))
	}
}

func TestCheckVersions(t *testing.T) {
	op := func(at int, v uint64) Op {
		return Op{Session: 1, Invoke: ms(at), Outcome: OK, Versions: map[string]uint64{"cart": v}}
	}
	if v := CheckVersions([]Op{op(0, 1), op(10, 2), op(20, 2), op(30, 5)}); len(v) != 0 {
		t.Fatalf("growing versions reported: %q", v)
	}
	if v := CheckVersions([]Op{op(0, 1), op(10, 3), op(20, 2)}); len(v) != 1 {
		t.Fatalf("a version going back: %q", v)
	}
	ended := Op{Session: 1, Invoke: ms(15), Outcome: OK, Versions: map[string]uint64{}}
	if v := CheckVersions([]Op{op(0, 1), op(10, 3), ended, op(20, 1)}); len(v) != 0 {
		t.Fatalf("a new session after one ended reported: %q", v)
	}
	checkout := op(15, 1)
	checkout.Input.Kind = Checkout
	if v := CheckVersions([]Op{op(0, 1), op(10, 3), checkout, op(20, 2)}); len(v) != 0 {
		t.Fatalf("a new session after a checkout reported: %q", v)
	}
}

func TestCheckExpiry(t *testing.T) {
	op := Op{Session: 1, Invoke: ms(1000), Outcome: OK, Expires: ms(5000), HasExpiry: true, SkewKnown: true}
	if v := CheckExpiry([]Op{op}); len(v) != 0 {
		t.Fatalf("a live SCONE reported: %q", v)
	}
	op.Skew = 5 * time.Second
	if v := CheckExpiry([]Op{op}); len(v) != 1 {
		t.Fatalf("a SCONE opened by a clock past its expiry: %q", v)
	}
	op.Outcome = Failed
	if v := CheckExpiry([]Op{op}); len(v) != 0 {
		t.Fatalf("a refused expired SCONE reported: %q", v)
	}
}

func TestCheckRetired(t *testing.T) {
	retired := map[uint32]time.Duration{1: ms(5000)}
	op := Op{Session: 1, Invoke: ms(1000), Outcome: OK, Expires: ms(60000), HasExpiry: true, KeyID: 1, SkewKnown: true}
	if v := CheckRetired([]Op{op}, retired); len(v) != 0 {
		t.Fatalf("a SCONE of a key not yet retired reported: %q", v)
	}
	op.Skew = 4 * time.Second // the serving clock reads 5 s: retired
	if v := CheckRetired([]Op{op}, retired); len(v) != 1 {
		t.Fatalf("a SCONE opened by a clock at its key's retirement: %q", v)
	}
	op.Skew, op.Invoke = 0, ms(7000)
	if v := CheckRetired([]Op{op}, retired); len(v) != 1 {
		t.Fatalf("a SCONE opened after its key's retirement: %q", v)
	}
	op.KeyID = 2 // a key still in use
	if v := CheckRetired([]Op{op}, retired); len(v) != 0 {
		t.Fatalf("a SCONE of a live key reported: %q", v)
	}
	op.KeyID, op.Outcome = 1, Failed
	if v := CheckRetired([]Op{op}, retired); len(v) != 0 {
		t.Fatalf("a refused SCONE of a retired key reported: %q", v)
	}
}

func TestScheduleIsSeeded(t *testing.T) {
	tg := Targets{Kill: []string{"a", "b"}, Pause: []string{"c"}, Links: []string{"a>b"}, Skew: []string{"a"}, Skews: []time.Duration{time.Minute}}
	s1 := NewSchedule(7, tg, time.Minute, 2*time.Second)
	s2 := NewSchedule(7, tg, time.Minute, 2*time.Second)
	s3 := NewSchedule(8, tg, time.Minute, 2*time.Second)
	if len(s1) < 5 {
		t.Fatalf("%d faults in a minute", len(s1))
	}
	kinds := map[FaultKind]bool{}
	for i := range s1 {
		if s1[i] != s2[i] {
			t.Fatalf("fault %d: %v and %v from one seed", i, s1[i], s2[i])
		}
		if i > 0 && s1[i].At < s1[i-1].At+s1[i-1].For {
			t.Fatalf("faults %d and %d overlap", i-1, i)
		}
		if s1[i].At+s1[i].For > time.Minute {
			t.Fatalf("fault %v outlasts the run", s1[i])
		}
		kinds[s1[i].Kind] = true
	}
	if len(kinds) != 5 {
		t.Fatalf("kinds drawn: %v", kinds)
	}
	if len(s1) == len(s3) && s1[0] == s3[0] && s1[1] == s3[1] {
		t.Fatal("another seed gave the same schedule")
	}
}

func TestScheduleCutsGossip(t *testing.T) {
	tg := Targets{Kill: []string{"a", "b"}, Pause: []string{"a"}, Links: []string{"c>a", "c>b", "a>b"}, Skew: []string{"a"}, Skews: []time.Duration{time.Minute}}
	without := NewSchedule(7, tg, 10*time.Minute, 2*time.Second)
	tg.Gossip = []string{"a", "b"}
	with := NewSchedule(7, tg, 10*time.Minute, 2*time.Second)
	if len(with) != len(without) {
		t.Fatalf("%d faults with gossip to cut, %d without", len(with), len(without))
	}
	targets := map[string]int{}
	for i, f := range with {
		if f.Kind != without[i].Kind || f.At != without[i].At || f.For != without[i].For {
			t.Fatalf("fault %d: %v with gossip to cut, %v without", i, f, without[i])
		}
		if f.Kind == Partition {
			targets[f.Target]++
		} else if f.Target != without[i].Target {
			t.Fatalf("fault %d: %v with gossip to cut, %v without", i, f, without[i])
		}
	}
	for _, want := range []string{"c>a", "c>b", "a>b", GossipPrefix + "a", GossipPrefix + "b"} {
		if targets[want] == 0 {
			t.Errorf("no partition of %s in %v", want, targets)
		}
	}
	parts, cuts := 0, targets[GossipPrefix+"a"]+targets[GossipPrefix+"b"]
	for _, n := range targets {
		parts += n
	}
	if cuts*4 < parts || cuts*4 > parts*3 {
		t.Errorf("%d gossip cuts among %d partitions (%v), want about half", cuts, parts, targets)
	}
}

func TestOutages(t *testing.T) {
	ops := []Op{
		{Session: 1, Invoke: ms(0), Return: ms(5), Outcome: OK},
		{Session: 1, Invoke: ms(10), Return: ms(15), Outcome: Unknown},
		{Session: 1, Invoke: ms(20), Return: ms(25), Outcome: Failed},
		{Session: 1, Invoke: ms(30), Return: ms(35), Outcome: OK},
		{Session: 2, Invoke: ms(0), Return: ms(5), Outcome: Failed},
	}
	got := Outages(ops)
	if len(got) != 1 || got[0] != ms(25) {
		t.Fatalf("Outages = %v, want [25ms]", got)
	}
	if q := Quantile(got, 0.99); q != ms(25) {
		t.Fatalf("Quantile = %v", q)
	}
}

func TestSegments(t *testing.T) {
	var ops []Op
	items := map[string]int32{}
	for i := range 1000 {
		isbn := fmt.Sprintf("b%d", i%7)
		if items[isbn] == 5 {
			delete(items, isbn)
			ops = append(ops, view(Op{Session: 0, Input: Input{Kind: Remove, ISBN: isbn, Qty: 5}, Invoke: ms(10 * i), Return: ms(10*i + 5), Outcome: OK}, maps.Clone(items), uint64(i+1)))
			continue
		}
		items[isbn]++
		ops = append(ops, view(Op{Session: 0, Input: Input{Kind: Add, ISBN: isbn, Qty: 1}, Invoke: ms(10 * i), Return: ms(10*i + 5), Outcome: OK}, maps.Clone(items), uint64(i+1)))
	}
	segs, inits := segments(Operations(ops, ms(100)), 1)
	if len(segs) != len(ops) || len(inits) != len(segs) {
		t.Fatalf("%d segments of %d sequential operations", len(segs), len(ops))
	}
	if r := Check(cart, ops, ms(100), 10*time.Second); len(r.Violations) != 0 {
		t.Fatalf("a sequential history: %q", r.Violations)
	}
	// A lost update at the end, and an unknown change that overlaps the
	// operations after it until the next acknowledged change.
	unknown := Op{Session: 0, Input: Input{Kind: Add, ISBN: "x", Qty: 1}, Invoke: ms(10000), Return: ms(10001), Outcome: Unknown}
	stale := get(0, 10010, maps.Clone(items), 1000)
	stale.Items["b0"]--
	stale.Reserved--
	bad := append(slices.Clone(ops), unknown, stale)
	if segs, _ := segments(Operations(bad, ms(100)), 1); len(segs) != len(ops)+1 || len(segs[len(segs)-1]) != 2 {
		t.Fatalf("%d segments: the unknown change and the read it overlaps must be in one", len(segs))
	}
	if r := Check(cart, bad, ms(100), 10*time.Second); len(r.Violations) != 1 {
		t.Fatalf("a stale read after 1000 operations: %q", r.Violations)
	}
	if segs, _ := segments(Operations(ops, ms(100)), 256); len(segs) != 4 {
		t.Fatalf("%d segments of at least 256 of 1000 operations", len(segs))
	}
}
