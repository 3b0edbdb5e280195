package hookmetrics_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scone-project/scone"
	ihook "github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/internal/hookmetrics"
	"github.com/scone-project/scone/internal/hookmetrics/hookmetricstest"
)

// metricsDoc lists the hook metrics as the docs show them; TestNames
// checks it against what a registry gathers.
const metricsDoc = `
| metric | type | help |
|---|---|---|
| ` + "`scone_hook_requests_total{transport,service,state}`" + ` | counter | Requests served by a SCONE server hook, by how their state began: restored, new, plain (a client without the hook), or failed (the hook failed the request). |
| ` + "`scone_hook_errors_total{transport,service,code}`" + ` | counter | Requests a SCONE server hook failed, by scone error code. |
| ` + "`scone_hook_scones_sealed_total{transport,service,outcome}`" + ` | counter | SCONEs the replies of a SCONE server hook carried: updated (a new SCONE) or dropped (a session ended). |
| ` + "`scone_hook_scone_bytes{transport,direction}`" + ` | histogram | Sizes of the SCONEs requests carried (in) and replies carried (out), in bytes. |
| ` + "`scone_hook_seconds{transport,phase}`" + ` | histogram | Time a SCONE server hook spent restoring a request's state (restore) and sealing it (seal). |
`

func newSealer(t testing.TB) *scone.Sealer {
	t.Helper()
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scone.NewSealer(ring)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newMetrics(t testing.TB, reg prometheus.Registerer, transport string) *hookmetrics.Metrics {
	t.Helper()
	m, err := hookmetrics.New(reg, transport)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// hook serves requests of one service the way a transport's hook does,
// without a transport.
type hook struct {
	t       testing.TB
	m       *hookmetrics.Metrics
	s       *scone.Sealer
	service string
}

// serve serves a request that carried tokens (plain: from a client without
// the hook), running handler on its state, and returns the reply.
func (h hook) serve(tokens [][]byte, plain bool, handler func(*scone.State)) (ihook.Reply, error) {
	x, err := h.m.Begin(context.Background(), h.s, ihook.Incoming{
		SCONEs: tokens, Expect: scone.Expect{Service: h.service}, Scope: "/" + h.service + "/", Plain: plain,
	})
	if err != nil {
		h.m.Failed(h.service, err)
		return ihook.Reply{}, err
	}
	if handler != nil {
		handler(x.State())
	}
	r, err := h.m.Finish(x, nil, false)
	if err != nil {
		h.m.Failed(h.service, err)
		return ihook.Reply{}, err
	}
	h.m.Served(x, plain, &r)
	return r, nil
}

// session runs one of each kind of request through h: new, restored, a
// tampered SCONE, the session's end, and a plain request. It returns the
// sizes of the SCONEs the requests carried.
func (h hook) session() (in []int) {
	h.t.Helper()
	r, err := h.serve(nil, false, func(st *scone.State) { st.SetData([]byte("one book")) })
	if err != nil || len(r.SCONEs) != 1 {
		h.t.Fatalf("new session: %v %+v", err, r)
	}
	tok := r.SCONEs[0]
	r, err = h.serve([][]byte{tok}, false, nil) // unchanged: re-sealed
	if err != nil || len(r.SCONEs) != 1 {
		h.t.Fatalf("restored: %v %+v", err, r)
	}
	bad := bytes.Clone(r.SCONEs[0])
	bad[len(bad)-1] ^= 1
	if _, err := h.serve([][]byte{bad}, false, nil); scone.CodeOf(err) != scone.CodeTampered {
		h.t.Fatalf("tampered: %v", err)
	}
	if r, err = h.serve([][]byte{r.SCONEs[0]}, false, (*scone.State).Drop); err != nil || len(r.Dropped) != 1 {
		h.t.Fatalf("drop: %v %+v", err, r)
	}
	if r, err = h.serve(nil, true, nil); err != nil || !r.Empty() {
		h.t.Fatalf("plain: %v %+v", err, r)
	}
	return []int{len(tok), len(bad), len(bad)}
}

// TestNames checks the names, types, label names and help of the hook
// metrics against metricsDoc.
func TestNames(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	hook{t, newMetrics(t, reg, hookmetrics.GRPC), newSealer(t), "cart"}.session()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range fams {
		var labels []string
		for _, l := range f.GetMetric()[0].GetLabel() {
			labels = append(labels, l.GetName())
		}
		typ := strings.ToLower(f.GetType().String())
		got[f.GetName()] = typ + " " + strings.Join(labels, ",") + " " + f.GetHelp()
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(metricsDoc), "\n")[2:] {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		name, labels, _ := strings.Cut(strings.Trim(cells[0], "`}"), "{")
		// Gather sorts label names.
		ls := strings.Split(labels, ",")
		slices.Sort(ls)
		want[name] = cells[1] + " " + strings.Join(ls, ",") + " " + cells[2]
	}
	if len(want) != 5 {
		t.Fatalf("metricsDoc lists %d metrics", len(want))
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("%s:\n got  %q\n want %q", name, got[name], w)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("%s is not in metricsDoc", name)
		}
	}
}

// TestCounts checks every sample after one request of each kind.
func TestCounts(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	in := hook{t, newMetrics(t, reg, hookmetrics.HTTP), newSealer(t), "cart"}.session()
	want := map[string]float64{
		`scone_hook_requests_total{service="cart",state="new",transport="http"}`:            1,
		`scone_hook_requests_total{service="cart",state="restored",transport="http"}`:       2,
		`scone_hook_requests_total{service="cart",state="failed",transport="http"}`:         1,
		`scone_hook_requests_total{service="cart",state="plain",transport="http"}`:          1,
		`scone_hook_errors_total{code="tampered",service="cart",transport="http"}`:          1,
		`scone_hook_scones_sealed_total{outcome="updated",service="cart",transport="http"}`: 2,
		`scone_hook_scones_sealed_total{outcome="dropped",service="cart",transport="http"}`: 1,
		`scone_hook_scone_bytes_count{direction="in",transport="http"}`:                     3,
		`scone_hook_scone_bytes_count{direction="out",transport="http"}`:                    2,
		`scone_hook_seconds_count{phase="restore",transport="http"}`:                        5,
		`scone_hook_seconds_count{phase="seal",transport="http"}`:                           4,
	}
	if d := hookmetricstest.Diff(hookmetricstest.Samples(t, reg), want); d != "" {
		t.Error(d)
	}
	// The sizes: what the requests carried.
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0
	for _, n := range in {
		sum += n
	}
	for _, f := range fams {
		if f.GetName() != "scone_hook_scone_bytes" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetLabel()[0].GetValue() == "in" && m.GetHistogram().GetSampleSum() != float64(sum) {
				t.Errorf("bytes in: sum %v, want %d", m.GetHistogram().GetSampleSum(), sum)
			}
		}
	}
}

// TestSharedRegistry registers the hooks of two transports and two
// services on one registry: each records into the same metrics.
func TestSharedRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := newSealer(t)
	hook{t, newMetrics(t, reg, hookmetrics.GRPC), s, "cart"}.session()
	hook{t, newMetrics(t, reg, hookmetrics.HTTP), s, "cart"}.session()
	hook{t, newMetrics(t, reg, hookmetrics.GRPC), s, "inventory"}.session()
	got := hookmetricstest.Samples(t, reg)
	for _, series := range []string{
		`scone_hook_requests_total{service="cart",state="new",transport="grpc"}`,
		`scone_hook_requests_total{service="cart",state="new",transport="http"}`,
		`scone_hook_requests_total{service="inventory",state="new",transport="grpc"}`,
	} {
		if got[series] != 1 {
			t.Errorf("%s = %v, want 1", series, got[series])
		}
	}
	if n := got[`scone_hook_seconds_count{phase="restore",transport="grpc"}`]; n != 10 {
		t.Errorf("restores over gRPC: %v, want 10 (two services)", n)
	}
}

// TestConflict: a registry with another metric of one of the names fails
// New, and New takes back what it registered.
func TestConflict(t *testing.T) {
	t.Parallel()
	reg := &counting{Registerer: prometheus.NewRegistry()}
	other := prometheus.NewCounter(prometheus.CounterOpts{Name: "scone_hook_seconds", Help: "Something else."})
	reg.MustRegister(other)
	_, err := hookmetrics.New(reg, hookmetrics.GRPC)
	if err == nil || !strings.Contains(err.Error(), "registering the SCONE hook metrics") {
		t.Fatalf("New on a registry with another scone_hook_seconds: %v", err)
	}
	if errors.As(err, new(prometheus.AlreadyRegisteredError)) {
		t.Fatalf("the error is an AlreadyRegisteredError: %v", err)
	}
	if reg.live != 1 {
		t.Fatalf("%d collectors registered after the failed New, want 1 (the other)", reg.live)
	}
}

// counting is a Registerer that counts the collectors registered on it.
type counting struct {
	prometheus.Registerer
	live int
}

func (r *counting) Register(c prometheus.Collector) error {
	err := r.Registerer.Register(c)
	if err == nil {
		r.live++
	}
	return err
}

func (r *counting) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *counting) Unregister(c prometheus.Collector) bool {
	ok := r.Registerer.Unregister(c)
	if ok {
		r.live--
	}
	return ok
}

// TestServedAllocs pins the cost of counting a served request, once its
// service's counters exist, to no allocations.
func TestServedAllocs(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(t, reg, hookmetrics.GRPC)
	s := newSealer(t)
	x, err := m.Begin(context.Background(), s, ihook.Incoming{Expect: scone.Expect{Service: "cart"}, Scope: "/cart/"})
	if err != nil {
		t.Fatal(err)
	}
	x.State().SetData([]byte("x"))
	r, err := m.Finish(x, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	var nilMetrics *hookmetrics.Metrics
	for name, m := range map[string]*hookmetrics.Metrics{"metrics": m, "nil": nilMetrics} {
		if n := testing.AllocsPerRun(100, func() { m.Served(x, false, &r) }); n != 0 {
			t.Errorf("%s: Served allocates %v times", name, n)
		}
	}
}

// BenchmarkHook measures a request's Begin and Finish of 256 B of state,
// in process, without and with metrics.
func BenchmarkHook(b *testing.B) {
	s := newSealer(b)
	x, err := ihook.Begin(s, context.Background(), ihook.Incoming{Expect: scone.Expect{Service: "cart"}, Scope: "/cart/"})
	if err != nil {
		b.Fatal(err)
	}
	x.State().SetData(make([]byte, 256))
	r, err := x.Finish(nil, false)
	if err != nil {
		b.Fatal(err)
	}
	tokens := r.SCONEs
	for _, metrics := range []bool{false, true} {
		var m *hookmetrics.Metrics
		name := "metrics=off"
		if metrics {
			m, name = newMetrics(b, prometheus.NewRegistry(), hookmetrics.GRPC), "metrics=on"
		}
		b.Run(name, func(b *testing.B) {
			h := hook{b, m, s, "cart"}
			dst := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				x, err := h.m.Begin(context.Background(), s, ihook.Incoming{
					SCONEs: tokens, Expect: scone.Expect{Service: "cart"}, Scope: "/cart/",
				})
				if err != nil {
					b.Fatal(err)
				}
				r, err := h.m.Finish(x, dst, false)
				if err != nil {
					b.Fatal(err)
				}
				h.m.Served(x, false, &r)
			}
		})
	}
}
