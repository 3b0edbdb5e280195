package marks_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/marks"
	"github.com/scone-project/scone/sconegrpc"
)

const (
	svc   = "bookstore.v1.Inventory"
	scope = "/bookstore.v1.Inventory/"
	dune  = "9780441013593"
)

// startNATS runs one NATS server with JetStream in this process, on a
// loopback port, storing in a temporary directory.
func startNATS(t testing.TB) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{
		ServerName: "n1", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// newStore connects to ns and opens the mark store, as a replica would.
func newStore(t testing.TB, ns *server.Server) *marks.JetStream {
	t.Helper()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := marks.DefaultConfig()
	cfg.Timeout = 500 * time.Millisecond
	store, err := marks.NewJetStream(context.Background(), js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return store
}

// replicas serves the inventory from n replicas, each with its own
// connection to the shared mark store, and returns their addresses and
// sealers.
func replicas(t testing.TB, ns *server.Server, n int, opts ...scone.Option) ([]string, []*scone.Sealer) {
	t.Helper()
	k := scone.GenerateKey(1, time.Now())
	var addrs []string
	var sealers []*scone.Sealer
	for range n {
		ring, err := scone.NewKeyRing(1, k)
		if err != nil {
			t.Fatal(err)
		}
		s, err := scone.NewSealer(ring, append([]scone.Option{scone.WithMarkStore(newStore(t, ns))}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer(sconegrpc.ServerOptions(s)...)
		pb.RegisterInventoryServer(srv, shop.Inventory{})
		go srv.Serve(lis)
		t.Cleanup(srv.Stop)
		addrs = append(addrs, lis.Addr().String())
		sealers = append(sealers, s)
	}
	return addrs, sealers
}

type holderKey struct{}

// dial connects to addr with the client hook, taking each call's holder
// from its context (withHolder), so one connection can present any SCONE.
func dial(t testing.TB, addr string) pb.InventoryClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, append(sconegrpc.DialOptions(sconegrpc.WithHolderFromContext(
		func(ctx context.Context) scone.Holder { h, _ := ctx.Value(holderKey{}).(scone.Holder); return h })),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewInventoryClient(conn)
}

// holding returns a context whose calls hold tok (a new holder).
func holding(t testing.TB, tok []byte) (context.Context, *scone.Dict) {
	t.Helper()
	d := scone.NewDict()
	if tok != nil {
		if _, err := d.Put(append([]byte(nil), tok...)); err != nil {
			t.Fatal(err)
		}
	}
	return context.WithValue(context.Background(), holderKey{}, scone.Holder(d)), d
}

// held returns how many copies of dune the session of tok holds, and the
// SCONE sealed after the call (which spends tok).
func held(t testing.TB, c pb.InventoryClient, tok []byte) (int32, []byte) {
	t.Helper()
	ctx, d := holding(t, tok)
	r, err := c.Held(ctx, &pb.HeldRequest{})
	if err != nil {
		t.Fatal(err)
	}
	next, _ := d.Get(svc, scope)
	var n int32
	for _, it := range r.GetItems() {
		if it.GetIsbn() == dune {
			n += it.GetQuantity()
		}
	}
	return n, next
}

// TestSpentOnceAcrossReplicas: two replicas share the JetStream store; N
// concurrent requests carrying the same SCONE version, spread over both:
// exactly one takes effect, the others are refused and change nothing. A
// replay of an older version is refused as rolled_back; a client whose
// reply was lost gets the newest SCONE back and goes on, and nothing is
// applied twice.
func TestSpentOnceAcrossReplicas(t *testing.T) {
	ns := startNATS(t)
	addrs, _ := replicas(t, ns, 2)
	clients := []pb.InventoryClient{dial(t, addrs[0]), dial(t, addrs[1])}

	ctx, d := holding(t, nil)
	if _, err := clients[0].Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	v1, _ := d.Get(svc, scope)

	const n = 16
	var wg sync.WaitGroup
	codes := make([]scone.Code, n)
	dicts := make([]*scone.Dict, n)
	start := make(chan struct{})
	for i := range n {
		ctx, d := holding(t, v1)
		dicts[i] = d
		wg.Go(func() {
			<-start
			_, err := clients[i%2].Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1})
			codes[i] = scone.CodeOf(err)
		})
	}
	close(start)
	wg.Wait()
	won := -1
	for i, c := range codes {
		switch c {
		case scone.CodeUnknown:
			if won >= 0 {
				t.Fatalf("requests %d and %d both took effect with the same version (%v)", won, i, codes)
			}
			won = i
		case scone.CodeConflict, scone.CodeRolledBack:
		default:
			t.Fatalf("request %d refused with %v", i, c)
		}
	}
	if won < 0 {
		t.Fatalf("no request took effect (%v)", codes)
	}
	v2, _ := dicts[won].Get(svc, scope)
	got, v3 := held(t, clients[1], v2)
	if got != 2 {
		t.Fatalf("after %d concurrent reserves of one copy each: %d held, want 2", n, got)
	}

	// A replay of an older version: refused.
	ctx, _ = holding(t, v1)
	_, err := clients[1].Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1})
	if scone.CodeOf(err) != scone.CodeRolledBack {
		t.Fatalf("replay of version 1 after version 3: %v", err)
	}

	// The reply of a reserve is lost: the client still holds v3.
	ctx, _ = holding(t, v3)
	if _, err := clients[0].Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, lost := holding(t, v3)
	_, err = clients[1].Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1})
	if scone.CodeOf(err) != scone.CodeRolledBack {
		t.Fatalf("retry after a lost reply: %v, want rolled_back with the newest SCONE", err)
	}
	newest, _ := lost.Get(svc, scope)
	if h, _ := scone.ParseHeader(newest); h.Version != 4 {
		t.Fatalf("the refusal gave version %d, want the newest, 4", h.Version)
	}
	if _, err := clients[1].Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1}); err != nil {
		t.Fatalf("going on with the newest: %v", err)
	}
	now, _ := lost.Get(svc, scope)
	if got, _ := held(t, clients[0], now); got != 4 {
		t.Fatalf("after the lost reply and one more reserve: %d held, want 4 (none applied twice)", got)
	}
}

// TestRevokedAndAgedAcrossReplicas: a session revoked through one replica
// and a session past the maximum age are refused by the other, each with
// its own code; a store that cannot be reached fails calls as unavailable.
func TestRevokedAndAgedAcrossReplicas(t *testing.T) {
	ns := startNATS(t)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	addrs, sealers := replicas(t, ns, 2, scone.WithClock(clock), scone.WithMaxSessionAge(time.Hour))
	a, b := dial(t, addrs[0]), dial(t, addrs[1])

	reserve := func(c pb.InventoryClient, tok []byte) ([]byte, error) {
		ctx, d := holding(t, tok)
		_, err := c.Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1})
		out, _ := d.Get(svc, scope)
		return out, err
	}
	s1, err := reserve(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := reserve(a, nil)
	if err != nil {
		t.Fatal(err)
	}
	var sc scone.SCONE
	if err := inspectSession(sealers[0], s1, &sc); err != nil {
		t.Fatal(err)
	}
	if err := sealers[0].Revoke(context.Background(), scone.Revocation{Session: sc.Session}); err != nil {
		t.Fatal(err)
	}
	if _, err := reserve(b, s1); scone.CodeOf(err) != scone.CodeRevoked {
		t.Fatalf("revoked session on the other replica: %v", err)
	}
	for range 3 {
		mu.Lock()
		now = now.Add(25 * time.Minute)
		mu.Unlock()
		next, err := reserve(b, s2)
		if err != nil {
			if scone.CodeOf(err) != scone.CodeSessionExpired {
				t.Fatalf("re-sealed session past the maximum age: %v", err)
			}
			break
		}
		s2 = next
	}
	if _, err := reserve(a, s2); scone.CodeOf(err) != scone.CodeSessionExpired {
		t.Fatalf("session past the maximum age: %v", err)
	}

	ns.Shutdown()
	ns.WaitForShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctx = context.WithValue(ctx, holderKey{}, scone.Holder(scone.NewDict()))
	if _, err := a.Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1}); scone.CodeOf(err) != scone.CodeUnavailable {
		t.Fatalf("with the store down: %v, want unavailable", err)
	}
}

// inspectSession opens tok with s, as scone inspect does, for its session.
func inspectSession(s *scone.Sealer, tok []byte, sc *scone.SCONE) error {
	_, err := hook.Open(s, context.Background(), sc, tok, scone.Expect{Service: svc})
	return err
}
