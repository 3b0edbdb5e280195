package bench

import "slices"

// A Ratio summarises per-round paired ratios: in each round both sides ran
// seconds apart, so drift on a noisy machine hits both alike; Median is
// the median over the rounds, Min and Max their range. N is the number of
// rounds; 0 means the ratio could not be formed (a side did not run).
type Ratio struct {
	Median, Min, Max float64
	N                int
}

// pairedRatio returns the ratio a[i]/b[i] summarised over the rounds i
// where both are positive.
func pairedRatio(a, b []float64) Ratio {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if a[i] > 0 && b[i] > 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	if len(rs) == 0 {
		return Ratio{}
	}
	slices.Sort(rs)
	return Ratio{Median: median(rs), Min: rs[0], Max: rs[len(rs)-1], N: len(rs)}
}

// median returns the median of vs (0 if empty); vs is not changed.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
