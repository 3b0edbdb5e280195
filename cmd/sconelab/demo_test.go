package main

import (
	"bytes"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
)

// TestDemo runs the demo for a few seconds, with kills, and checks its
// verdict.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	code := run([]string{"demo", "--duration=3s", "--sessions=6", "--kill-every=400ms", "--seed=42"}, &out, &out)
	text := out.String()
	if code != 0 {
		t.Fatalf("demo exited %d:\n%s", code, text)
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	last := lines[len(lines)-1]
	m := regexp.MustCompile(`^verified: sessions=6 calls=(\d+) restarts=(\d+) lost=0$`).FindStringSubmatch(last)
	if m == nil {
		t.Fatalf("last line %q", last)
	}
	if m[2] == "0" {
		t.Fatalf("no replica was restarted:\n%s", text)
	}
	for _, want := range []string{"kill ", "session 1:", "0 bytes in the servers"} {
		if !strings.Contains(text, want) {
			t.Errorf("the narration lacks %q", want)
		}
	}
	checkTotals(t, text, m[1])
	checkNarrationOrder(t, text)
}

// checkTotals checks that the demo's closing line "N calls = a … + b …"
// names parts that add up to N, and that N is the verified line's calls.
func checkTotals(t *testing.T, text, calls string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\s*[\d.]+s  (\d+) calls = (.+)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no line of totals:\n%s", text)
	}
	if m[1] != calls {
		t.Errorf("the totals count %s calls, the verified line %s", m[1], calls)
	}
	var sum int
	for _, part := range strings.Split(m[2], " + ") {
		n, err := strconv.Atoi(strings.Fields(part)[0])
		if err != nil {
			t.Fatalf("part %q of the totals: %v", part, err)
		}
		sum += n
	}
	if strconv.Itoa(sum) != m[1] {
		t.Errorf("the parts add up to %d, not %s: %s", sum, m[1], m[0])
	}
}

// checkNarrationOrder checks that no per-second line shows a replica down
// unless a line before it killed it (and no restart came in between).
func checkNarrationOrder(t *testing.T, text string) {
	t.Helper()
	down := map[string]bool{}
	kill := regexp.MustCompile(`  kill ([\w-]+)`)
	restart := regexp.MustCompile(`  restart ([\w-]+)`)
	shown := regexp.MustCompile(`([\w-]+) \d+ \(down\)`)
	for _, l := range strings.Split(text, "\n") {
		if m := kill.FindStringSubmatch(l); m != nil {
			down[m[1]] = true
		}
		if m := restart.FindStringSubmatch(l); m != nil {
			down[m[1]] = false
		}
		if !strings.Contains(l, "calls/s; served:") {
			continue
		}
		for _, m := range shown.FindAllStringSubmatch(l, -1) {
			if !down[m[1]] {
				t.Errorf("%q shows %s down before a line kills it", l, m[1])
			}
		}
	}
}

// TestDemoHTTP runs the demo over the HTTP front.
func TestDemoHTTP(t *testing.T) {
	var out bytes.Buffer
	code := run([]string{"demo", "--transport=http", "--duration=3s", "--sessions=6", "--kill-every=400ms", "--seed=7", "--quiet"}, &out, &out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	m := regexp.MustCompile(`^verified: sessions=6 calls=(\d+) restarts=\d+ lost=0$`).FindStringSubmatch(lines[len(lines)-1])
	if code != 0 || m == nil {
		t.Fatalf("demo over HTTP exited %d:\n%s", code, out.String())
	}
	checkTotals(t, out.String(), m[1])
}

// TestDemoRelayHTTP runs the demo with HTTP relays in front of the gateways'
// HTTP fronts, relays and gateways killed, and shoppers with a plain HTTP
// client (no cookies, no Scone header): the relays hold their SCONEs.
func TestDemoRelayHTTP(t *testing.T) {
	var out bytes.Buffer
	code := run([]string{"demo", "--mode=relay", "--transport=http", "--duration=3s", "--sessions=6", "--kill-every=300ms", "--seed=4"}, &out, &out)
	text := out.String()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	m := regexp.MustCompile(`^verified: sessions=6 calls=(\d+) restarts=[1-9]\d* lost=0$`).FindStringSubmatch(lines[len(lines)-1])
	if code != 0 || m == nil {
		t.Fatalf("demo with HTTP relays exited %d:\n%s", code, text)
	}
	checkTotals(t, text, m[1])
	checkNarrationOrder(t, text)
	for _, want := range []string{"HTTP reverse proxy", "JetStream bucket", "plain HTTP client"} {
		if !strings.Contains(text, want) {
			t.Errorf("the narration lacks %q", want)
		}
	}
}

// TestDemoClusterHTTP runs the demo in cluster mode over the nodes' HTTP
// fronts: the bookstore's HTTP handlers with the cluster's HTTP middleware,
// nodes killed and restarted.
func TestDemoClusterHTTP(t *testing.T) {
	var out bytes.Buffer
	code := run([]string{"demo", "--mode=cluster", "--transport=http", "--duration=5s", "--sessions=6", "--kill-every=1s", "--seed=6"}, &out, &out)
	text := out.String()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	m := regexp.MustCompile(`^verified: sessions=6 calls=(\d+) restarts=[1-9]\d* lost=0$`).FindStringSubmatch(lines[len(lines)-1])
	if code != 0 || m == nil {
		t.Fatalf("demo in cluster mode over HTTP exited %d:\n%s", code, text)
	}
	checkTotals(t, text, m[1])
	if !regexp.MustCompile(`kill node-\d: calls in flight`).MatchString(text) || !strings.Contains(text, "cluster's HTTP middleware") {
		t.Errorf("no node was killed, or the narration does not say who keeps the state:\n%s", text)
	}
}

// TestDemoRelay runs the demo with relays and a JetStream store, relays
// killed too, and clients without SCONE code.
func TestDemoRelay(t *testing.T) {
	var out bytes.Buffer
	code := run([]string{"demo", "--mode=relay", "--duration=3s", "--sessions=6", "--kill-every=300ms", "--seed=3"}, &out, &out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	m := regexp.MustCompile(`^verified: sessions=6 calls=(\d+) restarts=\d+ lost=0$`).FindStringSubmatch(lines[len(lines)-1])
	if code != 0 || m == nil {
		t.Fatalf("demo with relays exited %d:\n%s", code, out.String())
	}
	checkTotals(t, out.String(), m[1])
	checkNarrationOrder(t, out.String())
	if !strings.Contains(out.String(), "JetStream bucket") {
		t.Errorf("the narration does not say where the state is")
	}
}

// TestDemoCirculate runs the demo with the SCONEs circulating among three
// relays, a relay killed (every other kill is a relay's), and clients
// without SCONE code whose calls go round-robin over the relays.
func TestDemoCirculate(t *testing.T) {
	var out bytes.Buffer
	code := run([]string{"demo", "--mode=circulate", "--duration=5s", "--sessions=6", "--kill-every=1s", "--seed=9"}, &out, &out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if code != 0 || !regexp.MustCompile(`^verified: sessions=6 calls=\d+ restarts=[1-9]\d* lost=0$`).MatchString(lines[len(lines)-1]) {
		t.Fatalf("demo with circulating SCONEs exited %d:\n%s", code, out.String())
	}
	if !regexp.MustCompile(`kill relay-\d: calls in flight`).MatchString(out.String()) {
		t.Errorf("no relay was killed:\n%s", out.String())
	}
	if !regexp.MustCompile(`state: \d+ sessions' SCONEs in circulation, \d+ copies on the relays`).MatchString(out.String()) {
		t.Errorf("the narration does not say where the state is:\n%s", out.String())
	}
}

// TestDemoCluster runs the demo in cluster mode: four nodes keep the
// sessions' state with k=2, and nodes are killed and restarted.
func TestDemoCluster(t *testing.T) {
	var out bytes.Buffer
	code := run([]string{"demo", "--mode=cluster", "--duration=5s", "--sessions=6", "--kill-every=1s", "--seed=5"}, &out, &out)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if code != 0 || !regexp.MustCompile(`^verified: sessions=6 calls=\d+ restarts=[1-9]\d* lost=0$`).MatchString(lines[len(lines)-1]) {
		t.Fatalf("demo in cluster mode exited %d:\n%s", code, out.String())
	}
	if !regexp.MustCompile(`kill node-\d: calls in flight`).MatchString(out.String()) {
		t.Errorf("no node was killed:\n%s", out.String())
	}
}

func TestDemoFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"demo", "--mode=circulate", "--relays=2"}, 1, "need 2 ≤ copies < relays"},
		{[]string{"demo", "--mode=cluster", "--k=4"}, 1, "need 1 ≤ k < nodes"},
		{[]string{"demo", "--sessions=0"}, 1, "--sessions=0"},
		{[]string{"demo", "--replicas=1"}, 1, "--replicas=1"},
		{[]string{"demo", "--transport=smtp"}, 1, `--transport="smtp"`},
		{[]string{"demo", "--nope"}, 2, "flag provided but not defined"},
		{[]string{"demo", "--help"}, 0, "verified: sessions=N"},
		{[]string{"bench", "--help"}, 0, "SCONE_BENCH_<FLAG>"},
		{[]string{"chaos", "--mode=nope"}, 1, `--mode="nope"`},
		{[]string{"chaos", "--mode=relay", "--transport=http"}, 1, "only in cluster mode"},
		{[]string{"relay"}, 2, `unknown command "relay"`},
		{[]string{}, 2, "usage: sconelab"},
	} {
		var out bytes.Buffer
		if code := run(tc.args, &out, &out); code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("sconelab %v: exit %d, output %q; want exit %d and %q", tc.args, code, out.String(), tc.code, tc.want)
		}
	}
}

func TestCartModel(t *testing.T) {
	t.Parallel()
	dune, neu := "9780441013593", "9780441569595"
	m := newCartModel()
	steps := []struct {
		o    op
		want codes.Code
	}{
		{op{opCheckout, "", 0}, codes.FailedPrecondition},
		{op{opAdd, dune, 3}, codes.OK},
		{op{opAdd, dune, 3}, codes.FailedPrecondition}, // 6 > MaxPerTitle
		{op{opRemove, neu, 1}, codes.FailedPrecondition},
		{op{opAdd, neu, 1}, codes.OK},
		{op{opRemove, dune, 3}, codes.OK},
		{op{opCheckout, "", 0}, codes.OK},
	}
	for i, s := range steps {
		if got := m.expectError(s.o); got != s.want {
			t.Fatalf("step %d (%v): expect %v, want %v", i, s.o, got, s.want)
		}
		if s.want == codes.OK {
			m.apply(s.o)
		}
	}
	if len(m.items) != 0 || m.ops != 4 {
		t.Fatalf("model after the steps: %v, %d ops", m.items, m.ops)
	}
	m.apply(op{opAdd, neu, 2})
	good := &pb.CartView{Lines: []*pb.CartLine{{Book: shop.Book(neu), Quantity: 2}}, Reserved: 2, Operations: 5}
	if p := m.checkView(good); p != "" {
		t.Fatalf("a matching view: %s", p)
	}
	for _, bad := range []*pb.CartView{
		{Lines: good.Lines, Reserved: 1, Operations: 5},
		{Lines: good.Lines, Reserved: 2, Operations: 4},
		{Reserved: 0, Operations: 5},
	} {
		if m.checkView(bad) == "" {
			t.Errorf("a wrong view passed: %v", bad)
		}
	}
}

// TestNextOpDrawsAlike: the same seed gives the same draws whatever the
// model holds, so runs with one seed make the same choices.
func TestNextOpDrawsAlike(t *testing.T) {
	t.Parallel()
	a, b := newCartModel(), newCartModel()
	b.items["9780441013593"] = 2
	ra, rb := rand.New(rand.NewPCG(1, 2)), rand.New(rand.NewPCG(1, 2))
	for range 100 {
		oa, ob := a.nextOp(ra), b.nextOp(rb)
		if oa.kind != ob.kind || oa.quantity != ob.quantity {
			t.Fatalf("draws diverged: %v vs %v", oa, ob)
		}
	}
}
