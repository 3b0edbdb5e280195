package cluster

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone/internal/hookmetrics/hookmetricstest"
)

// TestHookMetrics checks the hook metrics a node records in its registry:
// a new session, a restored call that changes the state and one that
// only reads it (nothing written), a call that names no client, and one
// the hook fails (a service that needs more copies than there are nodes).
func TestHookMetrics(t *testing.T) {
	c := newTestCluster(t, 2, 2, func(cfg *Config) {
		cfg.KFor = func(service string) int {
			if service == "sconetest.Other" {
				return 3
			}
			return 0
		}
	})
	for _, call := range []struct{ client, method, op, want string }{
		{"client-a", "Add", "x", "x,"},         // new
		{"client-a", "Add", "y", "x,y,"},       // restored, written
		{"client-a", "Get", "", "x,y,"},        // restored, read only
		{"", "Add", "anonymous", "anonymous,"}, // plain
	} {
		out, _, err := c.call("node-0", call.client, call.method, call.op)
		if err != nil || out != call.want {
			t.Fatalf("%q %s: %q, %v; want %q", call.client, call.method, out, err, call.want)
		}
	}
	if _, _, err := c.call("node-0", "client-a", "sconetest.Other/Add", "z"); status.Code(err) != codes.Unavailable {
		t.Fatalf("a call that needs 3 copies of 2 nodes: %v, want Unavailable", err)
	}
	want := map[string]float64{
		`scone_hook_requests_total{service="sconetest.Counter",state="new",transport="cluster"}`:            1,
		`scone_hook_requests_total{service="sconetest.Counter",state="restored",transport="cluster"}`:       2,
		`scone_hook_requests_total{service="sconetest.Counter",state="plain",transport="cluster"}`:          1,
		`scone_hook_requests_total{service="sconetest.Other",state="failed",transport="cluster"}`:           1,
		`scone_hook_errors_total{code="unavailable",service="sconetest.Other",transport="cluster"}`:         1,
		`scone_hook_scones_sealed_total{outcome="updated",service="sconetest.Counter",transport="cluster"}`: 2,
		`scone_hook_scone_bytes_count{direction="in",transport="cluster"}`:                                  2,
		`scone_hook_scone_bytes_count{direction="out",transport="cluster"}`:                                 2,
		`scone_hook_seconds_count{phase="restore",transport="cluster"}`:                                     4,
		`scone_hook_seconds_count{phase="seal",transport="cluster"}`:                                        3,
	}
	if d := hookmetricstest.Diff(hookmetricstest.Samples(t, c.node("node-0").node.Metrics()), want); d != "" {
		t.Error(d)
	}
	if got := hookmetricstest.Samples(t, c.node("node-1").node.Metrics()); len(got) != 0 {
		t.Errorf("node-1 served no calls, but has %v", got)
	}
}
