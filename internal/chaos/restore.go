package chaos

import (
	"maps"
	"slices"
	"time"
)

// Outages returns, per session, every stretch during which it made no
// progress: from the invocation of a call that failed (or whose outcome is
// unknown) after a success, to the return of the next call that succeeded
// or was refused by the shop's rules. A stretch still open at the end is
// not counted.
func Outages(ops []Op) []time.Duration {
	bySess := map[int][]Op{}
	for _, op := range ops {
		bySess[op.Session] = append(bySess[op.Session], op)
	}
	var out []time.Duration
	for _, id := range slices.Sorted(maps.Keys(bySess)) {
		s := bySess[id]
		slices.SortStableFunc(s, func(a, b Op) int { return int(a.Invoke - b.Invoke) })
		down, from := false, time.Duration(0)
		for _, op := range s {
			good := op.Outcome == OK || op.Outcome == Refused
			switch {
			case !good && !down:
				down, from = true, op.Invoke
			case good && down:
				down = false
				out = append(out, op.Return-from)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Quantile returns the q-quantile (0 ≤ q ≤ 1) of sorted durations, or 0.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}
