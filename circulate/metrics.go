package circulate

import "github.com/prometheus/client_golang/prometheus"

// metrics are a circulating relay's Prometheus metrics (listed in
// docs/operations.md).
type metrics struct {
	members   prometheus.Gauge
	moving    prometheus.Gauge
	copies    prometheus.GaugeFunc
	handoffs  *prometheus.CounterVec
	queries   *prometheus.CounterVec
	queryTime prometheus.Histogram
	writes    *prometheus.CounterVec
	expired   prometheus.Counter
	rejoins   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, copies func() float64) *metrics {
	m := &metrics{
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scone_circulate_members", Help: "Live relays of the group, as this relay sees them.",
		}),
		moving: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scone_circulate_moving", Help: "1 if copies move from relay to relay (more live relays than copies), else 0.",
		}),
		copies: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "scone_circulate_copies", Help: "Copies of clients' SCONEs this relay holds now.",
		}, copies),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scone_circulate_handoffs_total", Help: "Hand-offs of copies to the next relays, by outcome (ok, failed, stale).",
		}, []string{"outcome"}),
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scone_circulate_queries_total", Help: "Reads of a client's SCONEs, by outcome (local, found, new, unavailable).",
		}, []string{"outcome"}),
		queryTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scone_circulate_query_seconds", Help: "Time to find a client's SCONEs on the other relays.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scone_circulate_writes_total", Help: "Writes of replies to the copies, by outcome (ok, conflict, unavailable).",
		}, []string{"outcome"}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scone_circulate_expired_total", Help: "Copies dropped at their expiry.",
		}),
		rejoins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scone_circulate_rejoins_total", Help: "Attempts to rejoin a lost relay or a seed, by outcome (joined, failed).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.members, m.moving, m.copies, m.handoffs, m.queries, m.queryTime, m.writes, m.expired, m.rejoins)
	return m
}
