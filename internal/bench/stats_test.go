package bench

import (
	"sync/atomic"
	"testing"
	"time"
)

type sequence struct{ n atomic.Int64 }

func (s *sequence) ptr() *atomic.Int64 { return &s.n }

func TestPairedRatio(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b []float64
		want Ratio
	}{
		{"odd", []float64{10, 30, 20}, []float64{20, 30, 10}, Ratio{Median: 1, Min: 0.5, Max: 2, N: 3}},
		{"even", []float64{1, 3}, []float64{2, 2}, Ratio{Median: 1, Min: 0.5, Max: 1.5, N: 2}},
		{"missing rounds skipped", []float64{4, 0, 6}, []float64{2, 5, 0}, Ratio{Median: 2, Min: 2, Max: 2, N: 1}},
		{"none", []float64{0}, []float64{1}, Ratio{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pairedRatio(tc.a, tc.b); got != tc.want {
				t.Fatalf("pairedRatio(%v, %v) = %+v, want %+v", tc.a, tc.b, got, tc.want)
			}
		})
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 10000; i++ {
		h.Add(time.Duration(i) * time.Microsecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5000 * time.Microsecond}, {0.99, 9900 * time.Microsecond}, {0, time.Microsecond}} {
		got := h.Quantile(tc.q)
		if d := float64(got-tc.want) / float64(tc.want); d < -0.04 || d > 0.04 {
			t.Errorf("q%.2f = %v, want %v within 4%%", tc.q, got, tc.want)
		}
	}
	lat, frac := h.CDF()
	if len(lat) == 0 || frac[len(frac)-1] != 1 || lat[len(lat)-1] < 10*time.Millisecond {
		t.Errorf("CDF ends at %v, %v", lat[len(lat)-1], frac[len(frac)-1])
	}
	for i := range 200 {
		low, width := bucketRange(bucketOf(uint64(i * 997)))
		if v := uint64(i * 997); v < low || v >= low+width {
			t.Fatalf("%d not in its bucket [%d, %d)", v, low, low+width)
		}
	}
}
