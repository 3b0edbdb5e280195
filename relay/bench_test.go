package relay_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/relay"
	"github.com/scone-project/scone/sconegrpc"
)

// rmw is an inventory whose Lookup reads, changes and writes back 256 B of
// session state.
type rmw struct {
	pb.UnimplementedInventoryServer
}

var book = &pb.Book{Isbn: dune, Title: "Dune", PriceCents: 1099}

func (rmw) Lookup(ctx context.Context, _ *pb.LookupRequest) (*pb.Book, error) {
	if st, ok := scone.FromContext(ctx); ok {
		st.Update(func(d []byte) []byte {
			if len(d) != 256 {
				d = make([]byte, 256)
			}
			d[0]++
			return d
		})
	}
	return book, nil
}

// BenchmarkRelay measures a unary call through a relay over loopback, from
// 64 concurrent callers on one connection to the relay, to a server with the
// hook whose handler changes 256 B of session state per call:
//
//	store=none       callers name no client: the relay is a plain proxy, no state is carried
//	store=memory     each caller names its own client: the relay holds its SCONEs in memory
//	store=jetstream  the same, in a JetStream bucket (one replica) on a NATS server in this
//	                 process at its default sync_interval (2 min): acknowledged once written
//	store=jetsync    the same with sync_interval: always: acknowledged once on disk (fsync)
func BenchmarkRelay(b *testing.B) {
	for _, kind := range []string{"none", "memory", "jetstream", "jetsync"} {
		b.Run("store="+kind, func(b *testing.B) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			up := grpc.NewServer(sconegrpc.ServerOptions(newSealer(b, newRing(b)))...)
			pb.RegisterInventoryServer(up, rmw{})
			reflection.Register(up) // so the relay learns Lookup is unary
			go up.Serve(lis)
			defer up.Stop()
			var store relay.Store = relay.NewMemoryStore(relay.DefaultMemoryConfig())
			switch kind {
			case "jetstream":
				store = jetStreamStore(b, connect(b, startNATSSync(b, false)), 1)
			case "jetsync":
				store = jetStreamStore(b, connect(b, startNATSSync(b, true)), 1)
			}
			_, addr := startRelay(b, relayConfig([]string{lis.Addr().String()}, store))
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			c := pb.NewInventoryClient(conn)
			req := &pb.LookupRequest{Isbn: dune}
			var callers, failed atomic.Int64
			b.SetParallelism(32) // 64 callers on 2 CPUs
			b.ReportAllocs()
			b.RunParallel(func(p *testing.PB) {
				ctx := context.Background()
				if kind != "none" {
					ctx = metadata.AppendToOutgoingContext(ctx, "scone-client", fmt.Sprint("caller-", callers.Add(1)))
				}
				for p.Next() {
					if _, err := c.Lookup(ctx, req); err != nil {
						failed.Add(1)
					}
				}
			})
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d calls failed", n)
			}
		})
	}
}

// BenchmarkRelaysShareBucket measures calls through 1, 2 or 3 relays that
// share one JetStream bucket (one replica, NATS's default sync interval) on
// a NATS server in this process, 64 callers spread over the relays, each
// naming its own client, to one server as in BenchmarkRelay. On one machine
// the relays share its CPUs: the figure is what the bucket and its server
// take, not how relays on separate machines add up.
func BenchmarkRelaysShareBucket(b *testing.B) {
	for _, n := range []int{1, 2, 3} {
		b.Run(fmt.Sprint("relays=", n), func(b *testing.B) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			up := grpc.NewServer(sconegrpc.ServerOptions(newSealer(b, newRing(b)))...)
			pb.RegisterInventoryServer(up, rmw{})
			reflection.Register(up)
			go up.Serve(lis)
			defer up.Stop()
			ns := startNATSSync(b, false)
			var clients []pb.InventoryClient
			for range n {
				store := jetStreamStore(b, connect(b, ns), 1)
				_, addr := startRelay(b, relayConfig([]string{lis.Addr().String()}, store))
				conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				clients = append(clients, pb.NewInventoryClient(conn))
			}
			req := &pb.LookupRequest{Isbn: dune}
			var callers, failed atomic.Int64
			b.SetParallelism(32)
			b.ReportAllocs()
			b.RunParallel(func(p *testing.PB) {
				i := callers.Add(1)
				c := clients[int(i)%n]
				ctx := metadata.AppendToOutgoingContext(context.Background(), "scone-client", fmt.Sprint("caller-", i))
				for p.Next() {
					if _, err := c.Lookup(ctx, req); err != nil {
						failed.Add(1)
					}
				}
			})
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d calls failed", n)
			}
		})
	}
}
