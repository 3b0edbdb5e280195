package bench

import (
	"time"
)

// Row summarises one contender at one size over the rounds.
type Row struct {
	Contender string
	Size      int
	// QPS is the median over the rounds of the calls per second.
	QPS float64
	// P50 and P99 are latency percentiles over every call of every round.
	P50, P99 time.Duration
	// CPUPerCall is the median over the rounds of CPU time per call (this
	// process, callers and servers, and the contender's external processes).
	CPUPerCall time.Duration
	// CallerWire and ServerWire are the median over the rounds of the
	// bytes per call on the callers' connections and on the Sessions
	// servers' (see Run).
	CallerWire, ServerWire float64
	// HeapPer100k is the server-side memory growth per 100,000 sessions
	// in the heap pass, in bytes (0 without a heap pass).
	HeapPer100k float64
	// VsPlain and VsRedis are the QPS ratios to plain gRPC and to Redis at
	// the same size, paired per round.
	VsPlain, VsRedis Ratio
	// Calls, Errors and Wrong total the rounds.
	Calls, Errors, Wrong int64
	// FirstError is the first failed or wrong call's description.
	FirstError string
	// Latency merges the rounds' latencies.
	Latency *Histogram
}

// perRound returns f of the runs of contender at size, indexed by round-1
// (0 where it did not run).
func (rep *Report) perRound(contender string, size int, f func(*Run) float64) []float64 {
	out := make([]float64, rep.Config.Rounds)
	for i := range rep.Runs {
		r := &rep.Runs[i]
		if r.Contender == contender && r.Size == size && r.Round >= 1 && r.Round <= len(out) {
			out[r.Round-1] = f(r)
		}
	}
	return out
}

func qpsOf(r *Run) float64 { return r.QPS() }

// Ratio returns the QPS of contender a over that of b at size, paired per
// round.
func (rep *Report) Ratio(a, b string, size int) Ratio {
	return pairedRatio(rep.perRound(a, size, qpsOf), rep.perRound(b, size, qpsOf))
}

// Rows returns a row per contender run and size, sizes in Config order.
func (rep *Report) Rows() []Row {
	var rows []Row
	for _, size := range rep.Config.Sizes {
		for _, name := range rep.Ran {
			row := Row{Contender: name, Size: size, Latency: new(Histogram)}
			var qps, cpu, cw, sw []float64
			for i := range rep.Runs {
				r := &rep.Runs[i]
				if r.Contender != name || r.Size != size {
					continue
				}
				qps = append(qps, r.QPS())
				if r.Calls > 0 {
					cpu = append(cpu, float64(r.CPU)/float64(r.Calls))
					cw = append(cw, float64(r.CallerWire)/float64(r.Calls))
					sw = append(sw, float64(r.ServerWire)/float64(r.Calls))
				}
				row.Calls += r.Calls
				row.Errors += r.Errors
				row.Wrong += r.Wrong
				if row.FirstError == "" {
					row.FirstError = r.FirstError
				}
				row.Latency.Merge(r.Latency)
			}
			row.QPS = median(qps)
			row.CPUPerCall = time.Duration(median(cpu))
			row.CallerWire, row.ServerWire = median(cw), median(sw)
			for _, h := range rep.Heap {
				if h.Contender == name && h.Size == size && h.Sessions > 0 {
					row.HeapPer100k = float64(h.Growth()) / float64(h.Sessions) * 1e5
				}
			}
			row.P50, row.P99 = row.Latency.Quantile(0.50), row.Latency.Quantile(0.99)
			row.VsPlain = rep.Ratio(name, Plain, size)
			row.VsRedis = rep.Ratio(name, Redis, size)
			rows = append(rows, row)
		}
	}
	return rows
}

// Tracked is a ratio the project follows from run to run.
type Tracked struct {
	Name  string // e.g. "client ÷ plain"
	Size  int
	Ratio Ratio
}

// Tracked returns the ratios the project follows: client mode over plain
// gRPC, Redis and the map; each relay over nginx; the cluster over client
// mode; circulation over the relay's memory store; sconehttp over plain
// net/http, over the same bytes in a plain cookie (the limit), and over
// gorilla/sessions and scs; at every size (N = 0 where a side did not run).
func (rep *Report) Tracked() []Tracked {
	pairs := [][2]string{
		{Client, Plain}, {Client, Redis}, {Client, Map},
		{RelayMemory, Nginx}, {RelayJetStream, Nginx},
		{ClusterK2, Client},
		{Circulate, RelayMemory},
		{HTTPScone, HTTPPlain}, {HTTPScone, HTTPCookie}, {HTTPScone, HTTPGorilla}, {HTTPScone, HTTPSCS},
	}
	var out []Tracked
	for _, p := range pairs {
		for _, size := range rep.Config.Sizes {
			out = append(out, Tracked{p[0] + " ÷ " + p[1], size, rep.Ratio(p[0], p[1], size)})
		}
	}
	return out
}
