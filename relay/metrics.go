package relay

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are a relay's Prometheus metrics (listed in docs/operations.md).
type metrics struct {
	requests    *prometheus.CounterVec
	stored      prometheus.Counter
	dropped     prometheus.Counter
	attached    prometheus.Counter
	lookups     *prometheus.CounterVec
	passthrough prometheus.Counter
	refused     *prometheus.CounterVec
	carried     *prometheus.CounterVec
	storeTime   *prometheus.HistogramVec
	retries     *prometheus.CounterVec
}

// expiryCounter is a Store that counts the SCONEs it found expired.
type expiryCounter interface{ Expired() uint64 }

func newMetrics(reg prometheus.Registerer, store Store) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scone_relay_requests_total",
			Help: "Requests relayed, by status code of their outcome: gRPC's, or HTTP's for an HTTP relay.",
		}, []string{"code"}),
		stored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scone_relay_scones_stored_total",
			Help: "SCONEs taken off replies and stored.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scone_relay_sessions_dropped_total",
			Help: "Sessions ended by replies, their SCONEs deleted from the store.",
		}),
		attached: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scone_relay_scones_attached_total",
			Help: "SCONEs attached to requests from the store.",
		}),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scone_relay_lookups_total",
			Help: "Store lookups for requests from named clients: hit (SCONEs attached) or miss (none held for the target).",
		}, []string{"result"}),
		passthrough: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scone_relay_passthrough_total",
			Help: "Replies whose SCONEs went on to the client, because the request named no client.",
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scone_relay_refused_total",
			Help: "Requests or replies refused by the relay, by scone error code.",
		}, []string{"code"}),
		carried: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scone_relay_carried_total",
			Help: "Calls whose SCONEs the relay carried upstream, by carrier: body (unary methods, learnt by reflection), metadata, or header (an HTTP relay's Scone header).",
		}, []string{"carrier"}),
		storeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "scone_relay_store_seconds",
			Help:    "Time spent in the store, by operation.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10),
		}, []string{"op"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scone_relay_retries_total",
			Help: "Calls re-sent to another upstream after one failed before answering (Config.RetryMethods), by outcome of the re-send: answered, or failed before answering too.",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.requests, m.stored, m.dropped, m.attached, m.lookups, m.passthrough, m.refused, m.carried, m.storeTime, m.retries)
	if ec, ok := store.(expiryCounter); ok {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "scone_relay_scones_expired_total",
			Help: "SCONEs the store found expired: dropped (memory) or skipped by reads (JetStream, which deletes them with their key's TTL).",
		}, func() float64 { return float64(ec.Expired()) }))
	}
	return m
}
