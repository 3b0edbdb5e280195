package circulate_test

import (
	"testing"

	"github.com/scone-project/scone/circulate"
)

// counter returns the value of a counter of s's metrics (with the label
// name=value, if name is not empty), 0 if absent.
func counter(t testing.TB, s *circulate.Store, metric, name, value string) float64 {
	t.Helper()
	families, err := s.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != metric {
			continue
		}
		for _, m := range f.GetMetric() {
			if name == "" {
				return m.GetCounter().GetValue()
			}
			for _, l := range m.GetLabel() {
				if l.GetName() == name && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
