package cluster

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkClusterNodes runs the workload of BenchmarkCluster (64 callers,
// each its own client, every call replacing a 256-byte state) on clusters
// of 2, 4 and 8 nodes keeping k=2 copies, the callers spread evenly over
// the nodes. All nodes share this machine's CPUs, so calls/s says how the
// protocol's own cost changes with the number of nodes (cpu-µs/call, and
// peer-ops/call: with more nodes, fewer calls land on a node that owns the
// client's record), not how nodes on separate machines add up; the scaling
// model in docs/scaling.md combines the two.
func BenchmarkClusterNodes(b *testing.B) {
	value := strings.Repeat("s", 256)
	for _, n := range []int{2, 4, 8} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			c := newTCPCluster(b, n, 2)
			benchCluster(b, c, value)
			// The figures are of n nodes only if none was taken for dead
			// under the load and left the view.
			for _, tn := range c.nodes {
				if got := len(tn.node.Members()); got != n {
					b.Fatalf("%s sees %d members after the run, want %d: the figures are of a smaller cluster", tn.name, got, n)
				}
			}
		})
	}
}
