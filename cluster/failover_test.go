package cluster

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

var failoverKills = flag.Int("cluster.kills", 2, "TestClusterFailover: nodes to kill (and restart), one after another")

// TestClusterFailover measures, on a four-node cluster with k=2 on loopback
// TCP and UDP (real memberlist, LANConfig), how long after a node is killed
// the sessions it kept are served again, over -cluster.kills kills: for
// each session the victim kept a copy of, the time from the kill to the
// session's first successful call (retrying every 5 ms through the
// survivors), and for each kill the longest of its sessions'. It logs p50
// and p99 of both; BENCHMARKS.md records them for
//
//	go test ./cluster -run TestClusterFailover -cluster.kills=20 -v
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts nodes")
	}
	c := newTCPCluster(t, 4, 2)
	clients := make([]string, 16)
	for i := range clients {
		clients[i] = fmt.Sprint("client-", i)
		if err := setVia(c.nodes[i%4], clients[i], "first"); err != nil {
			t.Fatal(err)
		}
	}
	var times, sessions []time.Duration
	for i := range *failoverKills {
		victim := c.nodes[i%len(c.nodes)]
		var survivors []*tcpNode
		for _, tn := range c.nodes {
			if tn != victim {
				survivors = append(survivors, tn)
			}
		}
		var affected []string // the sessions the victim keeps a copy of
		for _, cl := range clients {
			if slices.Contains(Owners(headerKey(cl), survivors[0].node.Members(), 2), victim.name) {
				affected = append(affected, cl)
			}
		}
		start := time.Now()
		c.kill(victim)
		var mu sync.Mutex
		var worst time.Duration
		var wg sync.WaitGroup
		for j, cl := range affected {
			wg.Go(func() {
				for try := 0; ; try++ {
					if setVia(survivors[(j+try)%len(survivors)], cl, fmt.Sprint("after-kill-", i)) == nil {
						break
					}
					if time.Since(start) > 20*time.Second {
						t.Errorf("kill %d: client %s not served for 20 s", i, cl)
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
				took := time.Since(start)
				mu.Lock()
				worst = max(worst, took)
				sessions = append(sessions, took)
				mu.Unlock()
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		times = append(times, worst)
		t.Logf("kill %d (%s, %d sessions): served again after %v", i, victim.name, len(affected), worst.Round(time.Millisecond))
		c.start(victim)
		c.waitMembers(4)
	}
	if len(times) == 0 {
		return
	}
	slices.Sort(times)
	slices.Sort(sessions)
	p := func(d []time.Duration, q float64) time.Duration {
		return d[min(len(d)-1, int(q*float64(len(d))))].Round(time.Millisecond)
	}
	t.Logf("failover over %d kills: p50 %v, p99 %v, min %v", len(times), p(times, 0.5), p(times, 0.99), p(times, 0))
	t.Logf("first successful call of an affected session, over %d sessions: p50 %v, p99 %v, min %v",
		len(sessions), p(sessions, 0.5), p(sessions, 0.99), p(sessions, 0))
}

// setVia sets a client's state through one node.
func setVia(tn *tcpNode, client, value string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "scone-client", client)
	return tn.conn.Invoke(ctx, "/sconetest.Counter/Set", wrapperspb.String(value), new(wrapperspb.StringValue))
}
