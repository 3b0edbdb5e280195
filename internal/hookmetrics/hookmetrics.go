// Package hookmetrics holds the Prometheus metrics of the SCONE server
// hooks (sconegrpc, sconehttp, cluster), shared by every transport so a
// dashboard reads them the same way:
//
//	scone_hook_requests_total{transport,service,state}          counter
//	scone_hook_errors_total{transport,service,code}             counter
//	scone_hook_scones_sealed_total{transport,service,outcome}   counter
//	scone_hook_passengers_refused_total{transport,service}      counter
//	scone_hook_scone_bytes{transport,direction}                 histogram
//	scone_hook_seconds{transport,phase}                         histogram
//
// Each request counts once in scone_hook_requests_total: restored (its
// SCONE opened), new (it carried none, or, with ResetOnFailure, one that
// did not open), plain (a client without the hook), or failed (the hook
// failed it: a SCONE that does not open, a seal over budget, a cluster
// record that cannot be read or written; scone_hook_errors_total has the
// code). A handler's own error does not make a request failed.
// scone_hook_scones_sealed_total counts what the replies carry: updated
// for each new SCONE, dropped for each session ended, a front end's back
// ends' included. scone_hook_passengers_refused_total counts the replies
// of back ends refused for touching another back end's SCONE (see
// hook.Carry.Apply). scone_hook_scone_bytes has the size of each SCONE the
// requests carried (in; in cluster mode, read from the client's record)
// and the replies carried (out; in cluster mode, written to it);
// scone_hook_seconds
// the time to restore a request's state (restore: hook.Begin) and
// to seal it (seal: hook.Exchange.Finish).
//
// Several hooks may register on one registry (a gRPC and an HTTP hook in
// one process, or two services): the second reuses the collectors of the
// first.
package hookmetrics

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
)

// The transports, the values of the transport label.
const (
	GRPC    = "grpc"
	HTTP    = "http"
	Cluster = "cluster"
)

// The values of the state label of scone_hook_requests_total.
const (
	StateRestored = "restored" // the request's SCONE was opened
	StateNew      = "new"      // no SCONE: the state started empty
	StatePlain    = "plain"    // a client without the hook: no state
	StateFailed   = "failed"   // the hook failed the request
)

// SizeBuckets are the buckets of scone_hook_scone_bytes: 64 B to 64 KiB.
var SizeBuckets = prometheus.ExponentialBuckets(64, 2, 11)

// TimeBuckets are the buckets of scone_hook_seconds: 1 µs to 10 ms.
var TimeBuckets = []float64{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2}

// Metrics records what one server hook does. A nil *Metrics records
// nothing, so a hook without metrics calls the same methods. It is safe for
// concurrent use.
type Metrics struct {
	transport string
	requests  *prometheus.CounterVec
	errors    *prometheus.CounterVec
	sealed    *prometheus.CounterVec
	refused   *prometheus.CounterVec

	// The transport's children, resolved once.
	bytesIn, bytesOut prometheus.Observer
	restoreT, sealT   prometheus.Observer
	services          sync.Map // service ID → *service
}

// service holds the children of one service's counters, so a request
// costs no label lookups.
type service struct {
	restored, fresh, plain, failed prometheus.Counter
	updated, dropped               prometheus.Counter
}

// New registers the hook metrics on reg, or reuses those already there
// (prometheus.AlreadyRegisteredError), and returns the recorder of one hook
// of transport. It fails when reg holds other collectors under the same
// names; then it leaves reg as it was.
func New(reg prometheus.Registerer, transport string) (*Metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scone_hook_requests_total",
		Help: "Requests served by a SCONE server hook, by how their state began: restored, new, plain (a client without the hook), or failed (the hook failed the request).",
	}, []string{"transport", "service", "state"})
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scone_hook_errors_total",
		Help: "Requests a SCONE server hook failed, by scone error code.",
	}, []string{"transport", "service", "code"})
	sealed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scone_hook_scones_sealed_total",
		Help: "SCONEs the replies of a SCONE server hook carried: updated (a new SCONE) or dropped (a session ended).",
	}, []string{"transport", "service", "outcome"})
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "scone_hook_passengers_refused_total",
		Help: "Replies of back ends, called for a request a SCONE server hook served, refused for adding, changing or dropping another back end's SCONE.",
	}, []string{"transport", "service"})
	bytes := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "scone_hook_scone_bytes",
		Help:    "Sizes of the SCONEs requests carried (in) and replies carried (out), in bytes.",
		Buckets: SizeBuckets,
	}, []string{"transport", "direction"})
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "scone_hook_seconds",
		Help:    "Time a SCONE server hook spent restoring a request's state (restore) and sealing it (seal).",
		Buckets: TimeBuckets,
	}, []string{"transport", "phase"})

	var added []prometheus.Collector
	undo := func() {
		for _, c := range added {
			reg.Unregister(c)
		}
	}
	var err error
	if requests, err = register(reg, requests, &added); err != nil {
		undo()
		return nil, err
	}
	if errs, err = register(reg, errs, &added); err != nil {
		undo()
		return nil, err
	}
	if sealed, err = register(reg, sealed, &added); err != nil {
		undo()
		return nil, err
	}
	if refused, err = register(reg, refused, &added); err != nil {
		undo()
		return nil, err
	}
	if bytes, err = register(reg, bytes, &added); err != nil {
		undo()
		return nil, err
	}
	if seconds, err = register(reg, seconds, &added); err != nil {
		undo()
		return nil, err
	}
	return &Metrics{
		transport: transport,
		requests:  requests,
		errors:    errs,
		sealed:    sealed,
		refused:   refused,
		bytesIn:   bytes.WithLabelValues(transport, "in"),
		bytesOut:  bytes.WithLabelValues(transport, "out"),
		restoreT:  seconds.WithLabelValues(transport, "restore"),
		sealT:     seconds.WithLabelValues(transport, "seal"),
	}, nil
}

// register registers c on reg and returns it, or the collector of the
// same kind reg already has; added gets c if it was registered here.
func register[C prometheus.Collector](reg prometheus.Registerer, c C, added *[]prometheus.Collector) (C, error) {
	err := reg.Register(c)
	if err == nil {
		*added = append(*added, c)
		return c, nil
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if old, ok := are.ExistingCollector.(C); ok {
			return old, nil
		}
		err = fmt.Errorf("another collector of type %T is registered", are.ExistingCollector)
	}
	var zero C
	return zero, fmt.Errorf("registering the SCONE hook metrics: %w", err)
}

// Begin runs hook.Begin, timing it and measuring the SCONEs the request
// carried. It does not count the request: the hook calls Served or Failed
// once it knows how the request ended.
func (m *Metrics) Begin(ctx context.Context, s *scone.Sealer, in hook.Incoming) (*hook.Exchange, error) {
	if m == nil {
		return hook.Begin(s, ctx, in)
	}
	start := time.Now()
	x, err := hook.Begin(s, ctx, in)
	m.restoreT.Observe(time.Since(start).Seconds())
	for _, tok := range in.SCONEs {
		m.bytesIn.Observe(float64(len(tok)))
	}
	return x, err
}

// Finish runs x.Finish, timing it. Like Begin, it does not count the
// request.
func (m *Metrics) Finish(x *hook.Exchange, dst []byte, failed bool) (hook.Reply, error) {
	if m == nil {
		return x.Finish(dst, failed)
	}
	start := time.Now()
	r, err := x.Finish(dst, failed)
	m.sealT.Observe(time.Since(start).Seconds())
	if c, ok := hook.CarryFrom(x.Context()); ok && c.Refused() > 0 {
		m.refused.WithLabelValues(m.transport, x.Service()).Add(float64(c.Refused()))
	}
	return r, err
}

// Served counts a request the hook served (whatever its handler
// returned): how its state began, and what its reply r carries (nil:
// nothing). plain marks a request from a client without the hook.
func (m *Metrics) Served(x *hook.Exchange, plain bool, r *hook.Reply) {
	if m == nil {
		return
	}
	svc := m.service(x.Service())
	switch {
	case plain:
		svc.plain.Inc()
	case x.Restored():
		svc.restored.Inc()
	default:
		svc.fresh.Inc()
	}
	if r == nil {
		return
	}
	if n := len(r.SCONEs); n > 0 {
		svc.updated.Add(float64(n))
		for _, tok := range r.SCONEs {
			m.bytesOut.Observe(float64(len(tok)))
		}
	}
	if n := len(r.Dropped); n > 0 {
		svc.dropped.Add(float64(n))
	}
}

// Failed counts a request of service that the hook failed with err.
func (m *Metrics) Failed(service string, err error) {
	if m == nil {
		return
	}
	m.service(service).failed.Inc()
	m.errors.WithLabelValues(m.transport, service, scone.CodeOf(err).String()).Inc()
}

// service returns the counters of a service, made on its first request.
func (m *Metrics) service(id string) *service {
	if s, ok := m.services.Load(id); ok {
		return s.(*service)
	}
	req := func(state string) prometheus.Counter { return m.requests.WithLabelValues(m.transport, id, state) }
	sealed := func(outcome string) prometheus.Counter { return m.sealed.WithLabelValues(m.transport, id, outcome) }
	s, _ := m.services.LoadOrStore(id, &service{
		restored: req(StateRestored),
		fresh:    req(StateNew),
		plain:    req(StatePlain),
		failed:   req(StateFailed),
		updated:  sealed("updated"),
		dropped:  sealed("dropped"),
	})
	return s.(*service)
}
