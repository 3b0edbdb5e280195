package relay_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/grpcframe"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/relay"
	"github.com/scone-project/scone/sconegrpc"
)

const dune, neuromancer = "9780441013593", "9780441569595"

func newRing(t testing.TB) *scone.KeyRing {
	t.Helper()
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

func newSealer(t testing.TB, ring *scone.KeyRing, opts ...scone.Option) *scone.Sealer {
	t.Helper()
	s, err := scone.NewSealer(ring, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startRelay serves a relay for cfg on 127.0.0.1 and returns its address.
func startRelay(t testing.TB, cfg relay.Config) (*relay.Server, string) {
	t.Helper()
	r, err := relay.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(lis)
	t.Cleanup(r.Stop)
	return r, lis.Addr().String()
}

// plainGateway is a gateway client without any SCONE code: only the
// identity header.
func plainGateway(t testing.TB, addr, identity string) (pb.GatewayClient, context.Context) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewGatewayClient(conn), metadata.AppendToOutgoingContext(context.Background(), "scone-client", identity)
}

func relayConfig(upstreams []string, store relay.Store) relay.Config {
	cfg := relay.DefaultConfig()
	cfg.Upstreams = upstreams
	cfg.Store = store
	// The test clients name themselves in a header, as behind an
	// authenticating proxy; the default trusts only client certificates.
	cfg.IdentityHeader = "scone-client"
	return cfg
}

// eventually retries f until it succeeds or 30 s pass (a killed replica's
// connection may fail a call or two; a NATS cluster elects a new leader).
func eventually[T any](t *testing.T, f func() (T, error)) T {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		v, err := f()
		if err == nil {
			return v
		}
		if c := status.Code(err); c != codes.Unavailable && c != codes.DeadlineExceeded || time.Now().After(deadline) {
			t.Fatalf("call failed: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUnmodifiedClientKeepsSession: a client without any SCONE code keeps a
// three-tier session through the relay, across replica kills and across
// both ends failing.
func TestUnmodifiedClientKeepsSession(t *testing.T) {
	t.Parallel()
	d, err := shop.Deploy(newSealer(t, newRing(t)), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	store := relay.NewMemoryStore(relay.DefaultMemoryConfig())
	r, addr := startRelay(t, relayConfig(d.Addrs(shop.RoleGateway), store))
	gw, ctx := plainGateway(t, addr, "alice")

	for i, b := range shop.Catalog[:3] {
		v, err := gw.AddItem(ctx, &pb.AddItemRequest{Isbn: b.Isbn, Quantity: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Lines) != i+1 || v.Operations != uint64(i+1) || v.Reserved != int32(i+1) {
			t.Fatalf("add %d through the relay: %v", i, v)
		}
	}
	if clients, scones := store.Len(); clients != 1 || scones != 3 {
		t.Fatalf("the relay holds %d clients, %d SCONEs; want 1 and 3 (gateway, cart, inventory)", clients, scones)
	}
	// Once the relay has learnt (by reflection) that the gateway's methods
	// are unary, it carries their SCONEs in the message body.
	deadline := time.Now().Add(10 * time.Second)
	for carried(t, r, "body") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the relay never used the body carrier")
		}
		if _, err := gw.GetCart(ctx, &pb.GetCartRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	// Another client is another session.
	hits, misses := lookups(t, r, "hit"), lookups(t, r, "miss")
	bob, bctx := plainGateway(t, addr, "bob")
	if v, err := bob.GetCart(bctx, &pb.GetCartRequest{}); err != nil || len(v.Lines) != 0 {
		t.Fatalf("bob sees %v, %v", v, err)
	}
	if h, m := lookups(t, r, "hit"), lookups(t, r, "miss"); h != hits || m != misses+1 {
		t.Fatalf("bob's first call: lookups hit %v→%v, miss %v→%v; want one more miss", hits, h, misses, m)
	}
	if _, err := gw.GetCart(ctx, &pb.GetCartRequest{}); err != nil || lookups(t, r, "hit") != hits+1 {
		t.Fatalf("alice's call: %v, hits %v→%v; want one more hit", err, hits, lookups(t, r, "hit"))
	}

	// A server replica of each tier killed mid-session: nothing lost.
	for _, role := range []shop.Role{shop.RoleGateway, shop.RoleCart, shop.RoleInventory} {
		d.Replicas(role)[0].Kill()
	}
	v := eventually(t, func() (*pb.CartView, error) { return gw.GetCart(ctx, &pb.GetCartRequest{}) })
	if len(v.Lines) != 3 || v.Operations != 3 {
		t.Fatalf("after killing replicas: %v", v)
	}

	// Both ends fail: every server replica restarted, and the client
	// replaced by a new process (a new connection) with the same identity.
	for _, role := range []shop.Role{shop.RoleGateway, shop.RoleCart, shop.RoleInventory} {
		for _, r := range d.Replicas(role) {
			r.Kill()
			if err := r.Restart(); err != nil {
				t.Fatal(err)
			}
		}
	}
	gw2, ctx2 := plainGateway(t, addr, "alice")
	v = eventually(t, func() (*pb.CartView, error) { return gw2.GetCart(ctx2, &pb.GetCartRequest{}) })
	if len(v.Lines) != 3 || v.Operations != 3 || v.Reserved != 3 {
		t.Fatalf("after both ends failed: %v", v)
	}
}

// carried reads the relay's count of calls carried by a carrier.
func carried(t *testing.T, r *relay.Server, carrier string) float64 {
	t.Helper()
	return counter(t, r, "scone_relay_carried_total", "carrier", carrier)
}

// lookups reads the relay's count of store lookups with a result.
func lookups(t *testing.T, r *relay.Server, result string) float64 {
	t.Helper()
	return counter(t, r, "scone_relay_lookups_total", "result", result)
}

// counter reads a labelled counter of the relay's metrics.
func counter(t *testing.T, r *relay.Server, name, label, value string) float64 {
	t.Helper()
	mfs, err := r.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestNoIdentityPassesThrough: a request that names no client gets its
// SCONEs back in its trailers, for a client that holds them itself.
func TestNoIdentityPassesThrough(t *testing.T) {
	t.Parallel()
	d, err := shop.Deploy(newSealer(t, newRing(t)), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	store := relay.NewMemoryStore(relay.DefaultMemoryConfig())
	_, addr := startRelay(t, relayConfig(d.Addrs(shop.RoleGateway), store))
	dict := scone.NewDict()
	conn, err := grpc.NewClient(addr, append(sconegrpc.DialOptions(sconegrpc.WithHolder(dict), sconegrpc.WithMetadataCarrier()),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gw := pb.NewGatewayClient(conn)
	for range 2 {
		if _, err := gw.AddItem(context.Background(), &pb.AddItemRequest{Isbn: dune, Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := gw.GetCart(context.Background(), &pb.GetCartRequest{})
	if err != nil || v.Lines[0].Quantity != 2 {
		t.Fatalf("a client holding its own SCONEs through the relay: %v %v", v, err)
	}
	if n, _ := dict.Len(); n != 3 {
		t.Fatalf("the client holds %d SCONEs", n)
	}
	if clients, _ := store.Len(); clients != 0 {
		t.Fatal("the relay stored SCONEs of a request without identity")
	}
}

// TestHookedClientHoldsItsOwn: a client that runs the hook (body carrier)
// and names itself keeps holding its own SCONEs through the relay.
func TestHookedClientHoldsItsOwn(t *testing.T) {
	t.Parallel()
	d, err := shop.Deploy(newSealer(t, newRing(t)), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	store := relay.NewMemoryStore(relay.DefaultMemoryConfig())
	r, addr := startRelay(t, relayConfig(d.Addrs(shop.RoleGateway), store))
	// Until the relay learns the methods are unary, it adds an empty
	// metadata frame beside the client's body frame; then nothing.
	dict := scone.NewDict()
	conn, err := grpc.NewClient(addr, append(sconegrpc.DialOptions(sconegrpc.WithHolder(dict)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gw := pb.NewGatewayClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "scone-client", "carol")
	// Enough calls for the relay to learn the methods are unary.
	for i := 1; i <= 20; i++ {
		v, err := gw.AddItem(ctx, &pb.AddItemRequest{Isbn: shop.Catalog[i%8].Isbn, Quantity: 1})
		if err != nil {
			t.Fatal(err)
		}
		if v.Operations != uint64(i) {
			t.Fatalf("call %d: the session is at %d operations", i, v.Operations)
		}
	}
	if carried(t, r, "body") != 0 {
		t.Fatal("the relay carried SCONEs in the body of a client that holds its own")
	}
	if _, scones := store.Len(); scones != 0 {
		t.Fatalf("the relay stored %d SCONEs of a client that holds its own", scones)
	}
	if n, _ := dict.Len(); n != 3 {
		t.Fatalf("the client holds %d SCONEs", n)
	}
}

// TestMemoryStoreExpiry: stored SCONEs are gone once they have been
// expired for the store's MaxClockSkew.
func TestMemoryStoreExpiry(t *testing.T) {
	t.Parallel()
	now := time.Now()
	clk := func() time.Time { return now }
	ring := newRing(t)
	s := newSealer(t, ring, scone.WithClock(clk))
	tok, _ := hook.Seal(s, nil, &scone.SCONE{Service: "cart", Scope: "/", Version: 1, IssuedAt: now, Expires: now.Add(time.Minute)})
	cfg := relay.DefaultMemoryConfig()
	cfg.Now = func() time.Time { return now }
	m := relay.NewMemoryStore(cfg)
	ctx := context.Background()
	if err := m.Apply(ctx, "alice", &hook.Reply{SCONEs: [][]byte{tok}}, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Get(ctx, "alice", "/cart.Cart/Get"); len(got) != 1 {
		t.Fatalf("before expiry: %d", len(got))
	}
	now = now.Add(time.Minute)
	if got, _ := m.Get(ctx, "alice", "/cart.Cart/Get"); len(got) != 1 {
		t.Fatal("at its expiry, within the clock skew tolerated, a SCONE was not attached")
	}
	now = now.Add(cfg.MaxClockSkew)
	if got, _ := m.Get(ctx, "alice", "/cart.Cart/Get"); len(got) != 0 {
		t.Fatal("an expired SCONE was attached")
	}
	m.Sweep()
	if clients, scones := m.Len(); clients != 0 || scones != 0 {
		t.Fatalf("after the sweep: %d clients, %d SCONEs", clients, scones)
	}
	if n := m.Expired(); n != 1 {
		t.Fatalf("Expired() = %d after one SCONE expired, want 1", n)
	}
}

// TestMemoryStoreBound: a full store refuses new clients before their call
// reaches a server, and keeps serving the ones it holds.
func TestMemoryStoreBound(t *testing.T) {
	t.Parallel()
	d, err := shop.Deploy(newSealer(t, newRing(t)), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cfg := relay.DefaultMemoryConfig()
	cfg.MaxClients = 1
	_, addr := startRelay(t, relayConfig(d.Addrs(shop.RoleGateway), relay.NewMemoryStore(cfg)))
	alice, actx := plainGateway(t, addr, "alice")
	if _, err := alice.AddItem(actx, &pb.AddItemRequest{Isbn: dune, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	bob, bctx := plainGateway(t, addr, "bob")
	_, err = bob.AddItem(bctx, &pb.AddItemRequest{Isbn: dune, Quantity: 1})
	if status.Code(err) != codes.ResourceExhausted || grpcframe.StatusCode(err) != scone.CodeExhausted {
		t.Fatalf("a new client at the bound: %v", err)
	}
	if v, err := alice.GetCart(actx, &pb.GetCartRequest{}); err != nil || v.Lines[0].Quantity != 1 {
		t.Fatalf("the held client at the bound: %v %v", v, err)
	}
}

// badUpstream is an inventory that answers Held with the SCONE it is given,
// as a misbehaving (or compromised) server would.
type badUpstream struct {
	pb.UnimplementedInventoryServer
	tok []byte
}

func (b badUpstream) Held(ctx context.Context, _ *pb.HeldRequest) (*pb.Reservations, error) {
	f := grpcframe.Frame{SCONEs: [][]byte{b.tok}}
	grpc.SetTrailer(ctx, metadata.Pairs(grpcframe.MetadataKey, string(grpcframe.AppendFrame(nil, &f))))
	return &pb.Reservations{}, nil
}

// TestBadSCONEFromUpstream: a malformed or oversized SCONE from an upstream
// fails the call and is never stored. (The relay holds no key: a tampered
// SCONE of the right layout is stored, and its server refuses it when it
// comes back; see TestRelayHoldsNoKey.)
func TestBadSCONEFromUpstream(t *testing.T) {
	t.Parallel()
	ring := newRing(t)
	s := newSealer(t, ring)
	now := time.Now()
	good, _ := hook.Seal(s, nil, &scone.SCONE{Service: "bookstore.v1.Inventory", Scope: "/", Version: 1, IssuedAt: now, Expires: now.Add(time.Hour)})
	big, _ := hook.Seal(s, nil, &scone.SCONE{Service: "bookstore.v1.Inventory", Scope: "/", Version: 1, IssuedAt: now, Expires: now.Add(time.Hour), Data: make([]byte, 2048)})
	for _, tc := range []struct {
		name string
		tok  []byte
		code scone.Code
	}{
		{"oversized", big, scone.CodeTooLarge},
		{"malformed", []byte("not a scone"), scone.CodeMalformed},
		{"good", good, scone.CodeUnknown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			up := grpc.NewServer()
			pb.RegisterInventoryServer(up, badUpstream{tok: tc.tok})
			go up.Serve(lis)
			defer up.Stop()
			store := relay.NewMemoryStore(relay.DefaultMemoryConfig())
			cfg := relayConfig([]string{lis.Addr().String()}, store)
			cfg.MaxSize = 1024
			_, addr := startRelay(t, cfg)
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx := metadata.AppendToOutgoingContext(context.Background(), "scone-client", "alice")
			_, err = pb.NewInventoryClient(conn).Held(ctx, &pb.HeldRequest{})
			_, scones := store.Len()
			if tc.code == scone.CodeUnknown {
				if err != nil || scones != 1 {
					t.Fatalf("a good SCONE: %v, %d stored", err, scones)
				}
				return
			}
			if err == nil || grpcframe.StatusCode(err) != tc.code || scones != 0 {
				t.Fatalf("got %v (code %v), %d stored; want code %v and nothing stored", err, grpcframe.StatusCode(err), scones, tc.code)
			}
		})
	}
}

// TestServeAfterStop: a relay stopped before Serve began (a shutdown that
// won the race with the start) returns nil from Serve, as one stopped
// while serving does, and closes the listener.
func TestServeAfterStop(t *testing.T) {
	r, err := relay.New(relayConfig([]string{"127.0.0.1:1"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	r.GracefulStop()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Serve(lis); err != nil {
		t.Fatalf("Serve after GracefulStop: %v, want nil", err)
	}
	if c, err := net.Dial("tcp", lis.Addr().String()); err == nil {
		c.Close()
		t.Errorf("the listener still accepts connections")
	}
}
