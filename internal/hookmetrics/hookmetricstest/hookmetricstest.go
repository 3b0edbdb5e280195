// Package hookmetricstest reads the hook metrics back in tests.
package hookmetricstest

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Samples gathers g and returns the non-zero samples of the hook metrics
// (those named scone_hook_*) by series, written as in the text format with
// the labels in order of name: a counter's value, and a histogram's sample
// count as name_count. It fails t if g fails.
func Samples(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), "scone_hook_") {
			continue
		}
		for _, m := range f.GetMetric() {
			var b strings.Builder
			var v float64
			switch {
			case m.GetCounter() != nil:
				b.WriteString(f.GetName())
				v = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				b.WriteString(f.GetName() + "_count")
				v = float64(m.GetHistogram().GetSampleCount())
			default:
				t.Fatalf("%s is a %v", f.GetName(), f.GetType())
			}
			b.WriteByte('{')
			for i, l := range m.GetLabel() { // Gather sorts them by name
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString(l.GetName() + "=" + strconv.Quote(l.GetValue()))
			}
			b.WriteByte('}')
			if v != 0 {
				out[b.String()] = v
			}
		}
	}
	return out
}

// Diff compares got with want, both as Samples returns them, and reports
// every series that differs, one per line; "" means they are equal.
func Diff(got, want map[string]float64) string {
	keys := slices.Collect(maps.Keys(got))
	for k := range want {
		if _, ok := got[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		g, inGot := got[k]
		w, inWant := want[k]
		switch {
		case !inWant:
			fmt.Fprintf(&b, "%s: got %v, want none\n", k, g)
		case !inGot:
			fmt.Fprintf(&b, "%s: got none, want %v\n", k, w)
		case g != w:
			fmt.Fprintf(&b, "%s: got %v, want %v\n", k, g, w)
		}
	}
	return b.String()
}
