package circulate_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/circulate"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/relay"
)

var debug = flag.Bool("circulate.debug", false, "log what the relays do")

// group is a group of circulating relays on 127.0.0.1 in front of a
// bookstore deployment.
type group struct {
	t      testing.TB
	shop   *shop.Deployment
	tune   func(*circulate.Config)
	mu     sync.Mutex
	relays []*member // by index; nil once killed
	cut    map[string]bool
}

// member is one relay of the group.
type member struct {
	name  string
	store *circulate.Store
	srv   *relay.Server
	addr  string // the relay's gRPC address, for clients
	peer  string // its Circulation address
}

func newSealer(t testing.TB, opts ...scone.Option) *scone.Sealer {
	t.Helper()
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scone.NewSealer(ring, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newGroup starts n relays with the store tuned by tune (if not nil), in
// front of a bookstore sealing with sealer.
func newGroup(t testing.TB, n int, sealer *scone.Sealer, tune func(*circulate.Config)) *group {
	t.Helper()
	d, err := shop.Deploy(sealer, 1)
	if err != nil {
		t.Fatal(err)
	}
	g := &group{t: t, shop: d, tune: tune, cut: map[string]bool{}}
	t.Cleanup(g.close)
	for i := range n {
		g.start(i)
	}
	g.waitMembers(n)
	return g
}

// start starts relay i, joining the live ones.
func (g *group) start(i int) *member {
	g.t.Helper()
	name := fmt.Sprintf("relay-%d", i)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		g.t.Fatal(err)
	}
	cfg := circulate.DefaultConfig()
	cfg.Name = name
	cfg.GossipAddr = "127.0.0.1:0"
	cfg.PeerAddr = lis.Addr().String()
	cfg.Dial = g.dialer(name)
	cfg.Dwell = 100 * time.Millisecond
	if *debug {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	for _, m := range g.live() {
		cfg.Seeds = append(cfg.Seeds, m.store.GossipAddr())
	}
	if g.tune != nil {
		g.tune(&cfg)
	}
	st, err := circulate.New(cfg)
	if err != nil {
		g.t.Fatal(err)
	}
	go st.ServePeer(lis)
	rcfg := relay.DefaultConfig()
	rcfg.Upstreams = g.shop.Addrs(shop.RoleGateway)
	rcfg.Store = st
	rcfg.IdentityHeader = "scone-client" // clients name themselves, as behind an authenticating proxy
	srv, err := relay.New(rcfg)
	if err != nil {
		g.t.Fatal(err)
	}
	rlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		g.t.Fatal(err)
	}
	go srv.Serve(rlis)
	m := &member{name: name, store: st, srv: srv, addr: rlis.Addr().String(), peer: cfg.PeerAddr}
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(g.relays) <= i {
		g.relays = append(g.relays, nil)
	}
	g.relays[i] = m
	return m
}

// dialer connects relay from to the others, unless cut off.
func (g *group) dialer(from string) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		g.mu.Lock()
		blocked := g.cut[from] || g.cut[addr]
		g.mu.Unlock()
		if blocked {
			return nil, errors.New("test: cut off")
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// kill stops relay i at once.
func (g *group) kill(i int) {
	g.mu.Lock()
	m := g.relays[i]
	g.relays[i] = nil
	g.mu.Unlock()
	m.srv.Stop()
	m.store.Close()
}

func (g *group) close() {
	for i, m := range g.relays {
		if m != nil {
			g.kill(i)
		}
	}
	g.shop.Close()
}

// live returns the running relays.
func (g *group) live() []*member {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*member
	for _, m := range g.relays {
		if m != nil {
			out = append(out, m)
		}
	}
	return out
}

// waitMembers waits until every live relay sees want members.
func (g *group) waitMembers(want int) {
	g.t.Helper()
	g.eventually(20*time.Second, func() error {
		for _, m := range g.live() {
			if got := len(m.store.Members()); got != want {
				return fmt.Errorf("%s sees %d members, want %d", m.name, got, want)
			}
		}
		return nil
	})
}

// eventually retries f every 20 ms until it succeeds or d passes.
func (g *group) eventually(d time.Duration, f func() error) {
	g.t.Helper()
	eventually(g.t, d, f)
}

// eventually retries f every 20 ms until it succeeds, and fails t with
// f's last error if d passes first.
func eventually(t testing.TB, d time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// copies returns how many live relays hold a copy of each client key.
func (g *group) copies() map[string]int {
	out := map[string]int{}
	for _, m := range g.live() {
		for key := range m.store.Copies() {
			out[key]++
		}
	}
	return out
}

// shopper is a client without SCONE code that sends each request to the
// relay it is told.
type shopper struct {
	id    string
	ops   uint64 // changes seen
	maybe uint64 // calls failed since: each may have changed the cart
	conns map[string]pb.GatewayClient
}

func newShopper(id string) *shopper {
	return &shopper{id: id, conns: map[string]pb.GatewayClient{}}
}

// add adds a book through relay m and checks that the cart counts every
// change acknowledged before (and at most the failed calls since, whose
// outcome is unknown).
func (s *shopper) add(t testing.TB, m *member) error {
	t.Helper()
	gw := s.conns[m.addr]
	if gw == nil {
		conn, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		gw = pb.NewGatewayClient(conn)
		s.conns[m.addr] = gw
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "scone-client", s.id)
	v, err := gw.AddItem(ctx, &pb.AddItemRequest{Isbn: shop.Catalog[s.ops%uint64(len(shop.Catalog))].Isbn, Quantity: 1})
	if err != nil {
		s.maybe++
		return err
	}
	if v.Operations < s.ops+1 || v.Operations > s.ops+1+s.maybe {
		t.Fatalf("%s through %s: the cart has seen %d operations, want %d (+%d failed calls): state lost",
			s.id, m.name, v.Operations, s.ops+1, s.maybe)
	}
	s.ops, s.maybe = v.Operations, 0
	return nil
}

// addUntil retries add through the live relays in turn until it succeeds.
func (s *shopper) addUntil(t testing.TB, g *group, start int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := start; ; i++ {
		live := g.live()
		err := s.add(t, live[i%len(live)])
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no relay took the call: %v", s.id, err)
		}
		if testing.Verbose() {
			t.Logf("%s through %s: %v", s.id, live[i%len(live)].name, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
