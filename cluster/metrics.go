package cluster

import "github.com/prometheus/client_golang/prometheus"

// metrics are a node's Prometheus metrics (listed in docs/operations.md).
type metrics struct {
	members     prometheus.Gauge
	records     prometheus.GaugeFunc
	replication prometheus.Histogram
	fetchTime   prometheus.Histogram
	fetches     *prometheus.CounterVec
	writes      *prometheus.CounterVec
	undos       prometheus.Counter
	backlog     prometheus.Gauge
	repairs     prometheus.Counter
	repairTime  prometheus.Histogram
	lost        prometheus.Gauge
	rejoins     *prometheus.CounterVec
	peerMsgs    prometheus.Counter
	peerOps     prometheus.Counter
	// fetchBy and writeBy are the counters of fetches and writes by
	// outcome, looked up once.
	fetchBy, writeBy map[string]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, records func() float64) *metrics {
	m := &metrics{
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scone_cluster_members", Help: "Live members of the cluster, as this node sees them.",
		}),
		records: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "scone_cluster_records", Help: "Client records this node holds.",
		}, records),
		replication: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scone_cluster_replication_seconds", Help: "Time to write a record to its k owners.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
		}),
		fetchTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scone_cluster_fetch_seconds", Help: "Time to read a record from its owners (reads of the node's own copy not counted).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14),
		}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scone_cluster_fetches_total", Help: "Record fetches for requests served here, by outcome.",
		}, []string{"outcome"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scone_cluster_writes_total", Help: "Record writes for requests served here, by outcome.",
		}, []string{"outcome"}),
		undos: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scone_cluster_undos_total", Help: "Failed writes taken back at another node.",
		}),
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scone_cluster_repair_backlog", Help: "Records still to copy or hand over, as of the last repair pass.",
		}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scone_cluster_repair_copies_total", Help: "Records copied to an owner by repair.",
		}),
		repairTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "scone_cluster_repair_seconds", Help: "Duration of repair passes that had work to do.",
			Buckets: prometheus.ExponentialBuckets(1e-3, 2, 14),
		}),
		lost: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "scone_cluster_lost_members", Help: "Members declared dead that this node still tries to rejoin.",
		}),
		rejoins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "scone_cluster_rejoins_total", Help: "Attempts to rejoin a lost member or a seed, by outcome (joined, failed).",
		}, []string{"outcome"}),
		peerMsgs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scone_cluster_peer_messages_total", Help: "Messages of operations sent to other nodes (each carries one or more).",
		}),
		peerOps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "scone_cluster_peer_operations_total", Help: "Reads, writes and undos of records sent to other nodes.",
		}),
	}
	reg.MustRegister(m.members, m.records, m.replication, m.fetchTime, m.fetches, m.writes, m.undos, m.backlog, m.repairs, m.repairTime,
		m.lost, m.rejoins, m.peerMsgs, m.peerOps)
	m.fetchBy, m.writeBy = map[string]prometheus.Counter{}, map[string]prometheus.Counter{}
	for _, o := range []string{fetchFound, fetchNew, fetchUnavailable, fetchLocal} {
		m.fetchBy[o] = m.fetches.WithLabelValues(o)
	}
	for _, o := range []string{outcomeOK, outcomeConflict, outcomeUnavailable, outcomeInDoubt} {
		m.writeBy[o] = m.writes.WithLabelValues(o)
	}
	return m
}
