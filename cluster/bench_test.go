package cluster

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/scone-project/scone"
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
// loopback TCP. It reports calls/s and the 99th percentile latency.
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
			c := newTCPCluster(b, 4, k)
			var conns []*grpc.ClientConn
			for _, tn := range c.nodes {
				conns = append(conns, tn.conn)
			}
			benchCalls(b, conns, value, func(ctx context.Context, client string) context.Context {
				return metadata.AppendToOutgoingContext(ctx, "scone-client", client)
			})
		})
	}
}

type holderKey struct{}

// benchCalls makes b.N calls of Set from 64 goroutines, each a client with
// the context newClient gives it, on the connections in turn, and reports
// calls/s and p99 latency.
func benchCalls(b *testing.B, conns []*grpc.ClientConn, value string, newClient func(context.Context, string) context.Context) {
	var next, failed atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	req := wrapperspb.String(value)
	b.SetParallelism(32) // 64 callers on 2 CPUs
	b.ReportAllocs()
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
				failed.Add(1)
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d calls failed", n, b.N)
	}
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
