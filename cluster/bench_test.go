package cluster

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/pki"
	"github.com/scone-project/scone/sconegrpc"
)

// BenchmarkCluster compares, in one run, four servers of a service whose
// every call replaces a 256-byte state:
//
//	mode=client  the client holds the SCONE (sconegrpc hooks both sides)
//	k=1..3       a four-node cluster keeps it on k nodes, written before
//	             each reply; clients have no SCONE code
//
// 64 callers, each its own client, spread over the four servers, on
// loopback TCP, peer links in plaintext (tls=1 runs k=2 with the peer
// links over mutual TLS). It reports calls/s, the 99th percentile latency
// and the process's CPU time per call; the cluster runs also report where
// a call's time goes: the share of reads served from the node's own copy
// (local-%), the mean time of a read of the owners (read-µs) and of a
// write (write-µs), and the operations sent to other nodes per call
// (peer-ops/call) and per message (ops/msg), and the changes of the
// members' views during the run (view-changes: a node declared dead under
// the load; 0 expected).
func BenchmarkCluster(b *testing.B) {
	value := strings.Repeat("s", 256)
	b.Run("mode=client", func(b *testing.B) {
		sealer := testSealer(b)
		var conns []*grpc.ClientConn
		for range 4 {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			srv := grpc.NewServer(sconegrpc.ServerOptions(sealer)...)
			srv.RegisterService(counterDesc, &counter{})
			go srv.Serve(lis)
			defer srv.Stop()
			holders := func(ctx context.Context) scone.Holder { return ctx.Value(holderKey{}).(scone.Holder) }
			conn, err := grpc.NewClient(lis.Addr().String(), append(sconegrpc.DialOptions(sconegrpc.WithHolderFromContext(holders)),
				grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			conns = append(conns, conn)
		}
		benchCalls(b, conns, value, func(ctx context.Context, _ string) context.Context {
			return context.WithValue(ctx, holderKey{}, scone.Holder(scone.NewDict()))
		})
	})
	for k := 1; k <= 3; k++ {
		b.Run(fmt.Sprintf("k=%d", k), func(b *testing.B) {
			benchCluster(b, newTCPCluster(b, 4, k), value)
		})
	}
	b.Run("k=2/tls=1", func(b *testing.B) {
		ca, err := pki.NewCA("cluster peers")
		if err != nil {
			b.Fatal(err)
		}
		benchCluster(b, newSecureCluster(b, 4, 2, ca, bytes.Repeat([]byte{7}, 32)), value)
	})
}

// benchCluster runs benchCalls on the nodes of c, and reports where the
// calls' time went.
func benchCluster(b *testing.B, c *tcpCluster, value string) {
	var conns []*grpc.ClientConn
	for _, tn := range c.nodes {
		conns = append(conns, tn.conn)
	}
	// Start once the settle window after the cluster formed has passed:
	// within it a read asks every member (see readFrom), which is the
	// cost of a change of the view, not of a call.
	var settled time.Time
	for _, tn := range c.nodes {
		n := tn.node
		settled = later(settled, n.changedAt(n.members.View().Hash, time.Now()).Add(n.settleWindow()))
	}
	time.Sleep(time.Until(settled))
	var changes0 uint64
	for _, tn := range c.nodes {
		changes0 += tn.node.changes.Load()
	}
	benchCalls(b, conns, value, func(ctx context.Context, client string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "scone-client", client)
	})
	var changes uint64
	for _, tn := range c.nodes {
		changes += tn.node.changes.Load()
	}
	// A busy node taken for dead under the load changes every node's
	// view: there must be none.
	b.ReportMetric(float64(changes-changes0), "view-changes")
	var local, reads, ops, msgs, readSum, readN, writeSum, writeN float64
	for _, tn := range c.nodes {
		m := tn.node.m
		local += testutil.ToFloat64(m.fetches.WithLabelValues(fetchLocal))
		for _, o := range []string{fetchLocal, fetchFound, fetchNew, fetchUnavailable} {
			reads += testutil.ToFloat64(m.fetches.WithLabelValues(o))
		}
		ops += testutil.ToFloat64(m.peerOps)
		msgs += testutil.ToFloat64(m.peerMsgs)
		mfs, err := tn.node.Metrics().Gather()
		if err != nil {
			b.Fatal(err)
		}
		for _, mf := range mfs {
			h := mf.GetMetric()[0].GetHistogram()
			switch mf.GetName() {
			case "scone_cluster_fetch_seconds":
				readSum, readN = readSum+h.GetSampleSum(), readN+float64(h.GetSampleCount())
			case "scone_cluster_replication_seconds":
				writeSum, writeN = writeSum+h.GetSampleSum(), writeN+float64(h.GetSampleCount())
			}
		}
	}
	b.ReportMetric(100*local/max(reads, 1), "local-%")
	b.ReportMetric(1e6*readSum/max(readN, 1), "read-µs")
	b.ReportMetric(1e6*writeSum/max(writeN, 1), "write-µs")
	b.ReportMetric(ops/float64(b.N), "peer-ops/call")
	b.ReportMetric(ops/max(msgs, 1), "ops/msg")
}

type holderKey struct{}

// benchCalls makes b.N calls of Set from 64 goroutines, each a client with
// the context newClient gives it, on the connections in turn, and reports
// calls/s and p99 latency.
func benchCalls(b *testing.B, conns []*grpc.ClientConn, value string, newClient func(context.Context, string) context.Context) {
	var next, failed atomic.Int64
	var firstErr atomic.Pointer[error]
	var mu sync.Mutex
	var lat []time.Duration
	req := wrapperspb.String(value)
	b.SetParallelism(32) // 64 callers on 2 CPUs
	b.ReportAllocs()
	cpu0 := cpuTime()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := next.Add(1)
		conn := conns[int(i)%len(conns)]
		ctx := newClient(context.Background(), fmt.Sprintf("client-%d", i))
		mine := make([]time.Duration, 0, 1024)
		out := new(wrapperspb.StringValue)
		for pb.Next() {
			t0 := time.Now()
			if err := conn.Invoke(ctx, "/sconetest.Counter/Set", req, out); err != nil {
				if failed.Add(1) == 1 {
					firstErr.Store(&err)
				}
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d calls failed, the first with: %v", n, b.N, *firstErr.Load())
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/call")
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
