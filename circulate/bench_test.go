package circulate_test

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/reflection"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/circulate"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/relay"
	"github.com/scone-project/scone/sconegrpc"
)

// rmw is an inventory whose Lookup reads, changes and writes back 256 B of
// session state.
type rmw struct {
	pb.UnimplementedInventoryServer
}

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
	return &pb.Book{Isbn: "9780441013593", Title: "Dune"}, nil
}

// timed is a relay.Store that records how long each Get takes: the lookup
// of a client's SCONEs.
type timed struct {
	relay.Store
	mu   sync.Mutex
	gets []time.Duration
}

func (t *timed) Get(ctx context.Context, client, target string) ([][]byte, error) {
	start := time.Now()
	toks, err := t.Store.Get(ctx, client, target)
	d := time.Since(start)
	t.mu.Lock()
	t.gets = append(t.gets, d)
	t.mu.Unlock()
	return toks, err
}

// BenchmarkCirculate measures a unary call through relays over loopback,
// from 64 concurrent callers (each its own client, without SCONE code) to a
// server with the hook whose handler changes 256 B of session state per
// call, in the same run:
//
//	relays=N      N relays circulating the SCONEs (2 copies, dwell 500 ms);
//	              each caller sends its calls to the relays in turn, so most
//	              calls reach a relay that does not hold the caller's SCONEs
//	              and must find them on the others
//	store=memory  relay mode: one relay keeping them in its memory, the
//	              alternative where a client must always reach the same relay
//
// Beside ns/op it reports calls per second and the p50 and p99 of the
// lookup (the store's Get: local, or a query of the other relays).
func BenchmarkCirculate(b *testing.B) {
	for _, n := range []int{0, 3, 5} {
		name := fmt.Sprintf("relays=%d", n)
		if n == 0 {
			name = "store=memory"
		}
		b.Run(name, func(b *testing.B) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			up := grpc.NewServer(sconegrpc.ServerOptions(newSealer(b))...)
			pb.RegisterInventoryServer(up, rmw{})
			reflection.Register(up)
			go up.Serve(lis)
			defer up.Stop()
			stores := benchStores(b, n)
			var clients []pb.InventoryClient
			for _, st := range stores {
				cfg := relay.DefaultConfig()
				cfg.Upstreams, cfg.Store = []string{lis.Addr().String()}, st
				cfg.IdentityHeader = "scone-client" // callers name themselves, as behind an authenticating proxy
				srv, err := relay.New(cfg)
				if err != nil {
					b.Fatal(err)
				}
				rl, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					b.Fatal(err)
				}
				go srv.Serve(rl)
				defer srv.Stop()
				conn, err := grpc.NewClient(rl.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
				if err != nil {
					b.Fatal(err)
				}
				defer conn.Close()
				clients = append(clients, pb.NewInventoryClient(conn))
			}
			req := &pb.LookupRequest{Isbn: "9780441013593"}
			var callers, failed atomic.Int64
			var firstErr atomic.Value
			b.SetParallelism(32) // 64 callers on 2 CPUs
			b.ReportAllocs()
			start := time.Now()
			b.RunParallel(func(p *testing.PB) {
				id := callers.Add(1)
				ctx := metadata.AppendToOutgoingContext(context.Background(), "scone-client", fmt.Sprint("caller-", id))
				for i := int(id); p.Next(); i++ {
					if _, err := clients[i%len(clients)].Lookup(ctx, req); err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
					}
				}
			})
			elapsed := time.Since(start)
			if f := failed.Load(); f > int64(b.N)/100 {
				b.Fatalf("%d of %d calls failed, the first with %v", f, b.N, firstErr.Load())
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
			var gets []time.Duration
			for _, st := range stores {
				gets = append(gets, st.gets...)
			}
			slices.Sort(gets)
			if len(gets) > 0 {
				b.ReportMetric(float64(gets[len(gets)/2])/1e3, "p50-lookup-µs")
				b.ReportMetric(float64(gets[len(gets)*99/100])/1e3, "p99-lookup-µs")
			}
		})
	}
}

// benchStores returns n circulating stores in one group, or with n = 0 one
// memory store; each timed.
func benchStores(b *testing.B, n int) []*timed {
	if n == 0 {
		return []*timed{{Store: relay.NewMemoryStore(relay.DefaultMemoryConfig())}}
	}
	var out []*timed
	var seeds []string
	for i := range n {
		pl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		cfg := circulate.DefaultConfig()
		cfg.Name, cfg.GossipAddr, cfg.PeerAddr, cfg.Seeds = fmt.Sprint("relay-", i), "127.0.0.1:0", pl.Addr().String(), seeds
		st, err := circulate.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		go st.ServePeer(pl)
		b.Cleanup(func() { st.Close() })
		seeds = append(seeds, st.GossipAddr())
		out = append(out, &timed{Store: st})
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, t := range out {
		for len(t.Store.(*circulate.Store).Members()) != n {
			if time.Now().After(deadline) {
				b.Fatal("the relays did not all join")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return out
}
