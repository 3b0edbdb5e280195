package bench

import (
	"math/bits"
	"time"
)

// A Histogram counts latencies in buckets about 3% wide (32 per power of
// two), so a run keeps all its calls' latencies in fixed memory: the heap
// figures of a run are not disturbed by its own bookkeeping.
type Histogram struct {
	counts [64 << subBits]uint64
	total  uint64
}

const subBits = 5

func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - subBits - 1
	return (e+1)<<subBits | int(v>>e)&(1<<subBits-1)
}

// bucketRange returns the smallest value of bucket i and the bucket's width.
func bucketRange(i int) (low, width uint64) {
	if i < 1<<subBits {
		return uint64(i), 1
	}
	e := i>>subBits - 1
	m := uint64(i & (1<<subBits - 1))
	return (1<<subBits | m) << e, 1 << e
}

// Add counts one latency.
func (h *Histogram) Add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.total++
}

// Merge adds o's counts to h.
func (h *Histogram) Merge(o *Histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.total += o.total
}

// Count returns how many latencies h holds.
func (h *Histogram) Count() uint64 { return h.total }

// Quantile returns the latency at or below which a fraction q of the
// calls fall (the middle of its bucket), or 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(q * float64(h.total))
	if rank >= h.total {
		rank = h.total - 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen > rank {
			low, width := bucketRange(i)
			return time.Duration(low + width/2)
		}
	}
	return 0
}

// CDF returns, for every non-empty bucket in order, the bucket's upper
// latency and the fraction of calls at or below it.
func (h *Histogram) CDF() (lat []time.Duration, frac []float64) {
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		low, width := bucketRange(i)
		lat = append(lat, time.Duration(low+width))
		frac = append(frac, float64(seen)/float64(h.total))
	}
	return lat, frac
}
