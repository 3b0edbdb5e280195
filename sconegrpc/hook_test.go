package sconegrpc_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
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
	"github.com/scone-project/scone/sconegrpc"
)

func TestStreaming(t *testing.T) {
	t.Parallel()
	d := deploy(t, newSealer(t), 1)
	c := newShopper(t, d)
	ctx := context.Background()
	for _, isbn := range []string{dune, neuromancer} {
		if _, err := c.AddItem(ctx, &pb.AddItemRequest{Isbn: isbn, Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	before := tokens(c.dict)
	stream, err := c.ListItems(ctx, &pb.GetCartRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		line, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, line.Book.Isbn)
	}
	if len(got) != 2 {
		t.Fatalf("streamed %v", got)
	}
	// The stream's trailers brought re-sealed SCONEs (version + 1).
	after := tokens(c.dict)
	for svc, tok := range after {
		hb, _ := scone.ParseHeader(before[svc])
		ha, _ := scone.ParseHeader(tok)
		if svc != "bookstore.v1.Inventory" && ha.Version != hb.Version+1 {
			t.Errorf("%s: version %d after the stream, %d before", svc, ha.Version, hb.Version)
		}
	}
	// And the session goes on.
	v, err := c.GetCart(ctx, &pb.GetCartRequest{})
	if err != nil || len(v.Lines) != 2 || v.Operations != 2 {
		t.Fatalf("after the stream: %v %v", v, err)
	}
}

func tokens(d *scone.Dict) map[string][]byte {
	out := map[string][]byte{}
	for _, h := range d.Headers() {
		tok, _ := d.Get(h.Service, h.Scope)
		out[h.Service] = tok
	}
	return out
}

// TestSerialisedCalls fires concurrent calls from one client: each starts
// from the SCONE the previous one left, so none of the changes is lost.
func TestSerialisedCalls(t *testing.T) {
	t.Parallel()
	d := deploy(t, newSealer(t), 2)
	c := newShopper(t, d)
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, b := range shop.Catalog {
		wg.Go(func() {
			if _, err := c.AddItem(ctx, &pb.AddItemRequest{Isbn: b.Isbn, Quantity: 1}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	v, err := c.GetCart(ctx, &pb.GetCartRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(shop.Catalog); len(v.Lines) != n || v.Reserved != int32(n) || v.Operations != uint64(n) {
		t.Fatalf("after %d concurrent adds: %d lines, %d reserved, %d operations", n, len(v.Lines), v.Reserved, v.Operations)
	}
}

// TestConcurrentCallsOptOut shows why calls are serialised: without it,
// concurrent changes start from the same SCONE and only one survives.
func TestConcurrentCallsOptOut(t *testing.T) {
	t.Parallel()
	d := deploy(t, newSealer(t), 2)
	c := newShopper(t, d, sconegrpc.WithConcurrentCalls())
	ctx := context.Background()
	if _, err := c.GetCart(ctx, &pb.GetCartRequest{}); err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, b := range shop.Catalog {
		wg.Go(func() {
			<-start
			c.AddItem(ctx, &pb.AddItemRequest{Isbn: b.Isbn, Quantity: 1})
		})
	}
	close(start)
	wg.Wait()
	v, err := c.GetCart(ctx, &pb.GetCartRequest{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("without serialisation, %d of %d concurrent adds survived", len(v.Lines), len(shop.Catalog))
	if len(v.Lines) > len(shop.Catalog) {
		t.Fatal("more lines than adds")
	}
}

// TestReplicaKilledMidSession kills the replicas that served a session:
// the next call goes to another replica, and the state is all there.
func TestReplicaKilledMidSession(t *testing.T) {
	t.Parallel()
	d := deploy(t, newSealer(t), 2)
	c := newShopper(t, d)
	ctx := context.Background()
	for i, b := range shop.Catalog[:4] {
		if _, err := c.AddItem(ctx, &pb.AddItemRequest{Isbn: b.Isbn, Quantity: int32(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	// Kill one replica of every tier; the survivors serve what follows.
	for _, role := range []shop.Role{shop.RoleGateway, shop.RoleCart, shop.RoleInventory} {
		d.Replicas(role)[0].Kill()
	}
	v := getCartEventually(t, c)
	if len(v.Lines) != 4 || v.Reserved != 1+2+3+4 || v.Operations != 4 {
		t.Fatalf("after killing replicas: %v", v)
	}
	// Now kill the others and bring the first ones back.
	for _, role := range []shop.Role{shop.RoleGateway, shop.RoleCart, shop.RoleInventory} {
		d.Replicas(role)[1].Kill()
		if err := d.Replicas(role)[0].Restart(); err != nil {
			t.Fatal(err)
		}
	}
	v = getCartEventually(t, c)
	if len(v.Lines) != 4 || v.Reserved != 10 || v.Operations != 4 {
		t.Fatalf("after swapping replicas: %v", v)
	}
	for _, role := range []shop.Role{shop.RoleGateway, shop.RoleCart} {
		if d.Replicas(role)[0].Served() == 0 {
			t.Errorf("%s never served", d.Replicas(role)[0].Name)
		}
	}
}

// getCartEventually calls GetCart until a replica answers (a killed
// replica's connection may fail a call or two), up to 10 s.
func getCartEventually(t *testing.T, c *shopper) *pb.CartView {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		v, err := c.GetCart(ctx, &pb.GetCartRequest{})
		cancel()
		if err == nil {
			return v
		}
		if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded || time.Now().After(deadline) {
			t.Fatalf("GetCart: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPlainClient: a client without the hook gets correct replies, with an
// empty state each call and nothing extra in the reply.
func TestPlainClient(t *testing.T) {
	t.Parallel()
	d := deploy(t, newSealer(t), 1)
	conn, err := shop.DialReplicas(d.Addrs(shop.RoleGateway))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewGatewayClient(conn)
	ctx := context.Background()
	for range 2 {
		v, err := c.AddItem(ctx, &pb.AddItemRequest{Isbn: dune, Quantity: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(v.Lines) != 1 || v.Lines[0].Quantity != 1 || v.Operations != 1 {
			t.Fatalf("plain client: %v", v)
		}
		if u := v.ProtoReflect().GetUnknown(); len(u) != 0 {
			t.Fatalf("the reply to a plain client carries %d unknown bytes", len(u))
		}
	}
}

// TestPlainServer: a client with the hook talks to a server without it;
// the frame is ignored and the replies are right.
func TestPlainServer(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterInventoryServer(srv, shop.Inventory{})
	go srv.Serve(lis)
	defer srv.Stop()
	dict := scone.NewDict()
	conn, err := grpc.NewClient(lis.Addr().String(), append(sconegrpc.DialOptions(sconegrpc.WithHolder(dict)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	b, err := pb.NewInventoryClient(conn).Lookup(context.Background(), &pb.LookupRequest{Isbn: dune})
	if err != nil || b.Title != "Dune" {
		t.Fatalf("Lookup: %v %v", b, err)
	}
	if n, _ := dict.Len(); n != 0 {
		t.Fatal("a plain server's reply left SCONEs")
	}
}

// TestMetadataCarriers runs a session with the metadata carrier both ways:
// the client's option, and a server without the body codec.
func TestMetadataCarriers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []sconegrpc.ClientOption
	}{
		{"client metadata", []sconegrpc.ClientOption{sconegrpc.WithMetadataCarrier()}},
		{"body", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSealer(t)
			_, addr := serveInventory(t, shop.Inventory{}, grpc.ChainUnaryInterceptor(sconegrpc.UnaryServerInterceptor(s)))
			c := dialInventory(t, addr, tc.opts...)
			ctx := context.Background()
			for i := range 3 {
				r, err := c.Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1})
				if err != nil {
					t.Fatal(err)
				}
				if r.Items[0].Quantity != int32(i+1) {
					t.Fatalf("reservation %d: %v", i, r)
				}
			}
		})
	}
}

// serveInventory serves an inventory implementation on 127.0.0.1.
func serveInventory(t testing.TB, impl pb.InventoryServer, opts ...grpc.ServerOption) (*grpc.Server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(opts...)
	pb.RegisterInventoryServer(srv, impl)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return srv, lis.Addr().String()
}

type inventoryClient struct {
	pb.InventoryClient
	dict *scone.Dict
}

func dialInventory(t testing.TB, addr string, opts ...sconegrpc.ClientOption) inventoryClient {
	t.Helper()
	dict := scone.NewDict()
	conn, err := grpc.NewClient(addr, append(sconegrpc.DialOptions(append([]sconegrpc.ClientOption{sconegrpc.WithHolder(dict)}, opts...)...),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return inventoryClient{pb.NewInventoryClient(conn), dict}
}

// TestFailedCallKeepsState: a handler error leaves the holder's SCONEs as
// they were, in every tier (the cart's reservation in inventory included).
func TestFailedCallKeepsState(t *testing.T) {
	t.Parallel()
	d := deploy(t, newSealer(t), 1)
	c := newShopper(t, d)
	ctx := context.Background()
	if _, err := c.AddItem(ctx, &pb.AddItemRequest{Isbn: dune, Quantity: shop.MaxPerTitle}); err != nil {
		t.Fatal(err)
	}
	before := tokens(c.dict)
	_, err := c.AddItem(ctx, &pb.AddItemRequest{Isbn: dune, Quantity: 1})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("adding past the limit: %v", err)
	}
	after := tokens(c.dict)
	for svc, tok := range before {
		if !bytes.Equal(after[svc], tok) {
			t.Errorf("%s's SCONE changed after a failed call", svc)
		}
	}
}

// errOnce is an inventory whose Held changes the state and then fails,
// with or without ApplyOnError.
type errOnce struct {
	shop.Inventory
	apply bool
}

func (e errOnce) Held(ctx context.Context, _ *pb.HeldRequest) (*pb.Reservations, error) {
	st, _ := scone.FromContext(ctx)
	st.Update(func(d []byte) []byte { return d }) // a change, then a failure
	if e.apply {
		st.ApplyOnError()
	}
	return nil, status.Error(codes.Aborted, "failing on purpose")
}

func TestApplyOnError(t *testing.T) {
	t.Parallel()
	for _, apply := range []bool{false, true} {
		s := newSealer(t)
		_, addr := serveInventory(t, errOnce{apply: apply}, sconegrpc.ServerOptions(s)...)
		c := dialInventory(t, addr)
		ctx := context.Background()
		if _, err := c.Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1}); err != nil {
			t.Fatal(err)
		}
		before, _ := c.dict.Get("bookstore.v1.Inventory", "/bookstore.v1.Inventory/")
		if _, err := c.Held(ctx, &pb.HeldRequest{}); status.Code(err) != codes.Aborted {
			t.Fatalf("Held: %v", err)
		}
		after, _ := c.dict.Get("bookstore.v1.Inventory", "/bookstore.v1.Inventory/")
		hb, _ := scone.ParseHeader(before)
		ha, _ := scone.ParseHeader(after)
		if apply && ha.Version != hb.Version+1 || !apply && ha.Version != hb.Version {
			t.Errorf("apply=%v: version %d → %d", apply, hb.Version, ha.Version)
		}
	}
}

// clock is a clock tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestErrorStatuses makes each error a client can meet through the hook and
// checks its gRPC status, its scone code (scone.CodeOf), and that the
// holder's SCONE is untouched.
func TestErrorStatuses(t *testing.T) {
	t.Parallel()
	const svc, scope = "bookstore.v1.Inventory", "/bookstore.v1.Inventory/"
	ctx := context.Background()
	type env struct {
		clk    *clock
		sealer *scone.Sealer
		good   []byte // the SCONE after the first Reserve
		older  []byte // the one before it
		addr   string
		holder inventoryClient
	}
	for _, tc := range []struct {
		name  string
		code  scone.Code
		grpc  codes.Code
		opts  []scone.Option
		sopts []sconegrpc.ServerOption
		// send returns the error of a call made with a bad SCONE.
		send func(t *testing.T, e *env) error
	}{
		{name: "tampered", code: scone.CodeTampered, grpc: codes.Unauthenticated,
			send: func(t *testing.T, e *env) error { return callWithToken(t, e.addr, flip(e.good, len(e.good)-1, 1)) }},
		{name: "unknown key", code: scone.CodeUnknownKey, grpc: codes.FailedPrecondition,
			send: func(t *testing.T, e *env) error { return callWithToken(t, e.addr, flip(e.good, 4, 0x40)) }},
		{name: "malformed", code: scone.CodeMalformed, grpc: codes.InvalidArgument,
			send: func(t *testing.T, e *env) error { return callWithToken(t, e.addr, flip(e.good, 0, 0x08)) }},
		{name: "expired", code: scone.CodeExpired, grpc: codes.FailedPrecondition,
			send: func(t *testing.T, e *env) error {
				e.clk.Advance(scone.DefaultTTL)
				return callWithToken(t, e.addr, e.good)
			}},
		{name: "revoked", code: scone.CodeRevoked, grpc: codes.PermissionDenied,
			send: func(t *testing.T, e *env) error {
				if err := e.sealer.Revoke(ctx, scone.Revocation{Service: svc}); err != nil {
					t.Fatal(err)
				}
				_, err := e.holder.Held(ctx, &pb.HeldRequest{})
				return err
			}},
		{name: "rolled back", code: scone.CodeRolledBack, grpc: codes.FailedPrecondition,
			opts: []scone.Option{scone.WithMarkStore(scone.NewMemoryMarkStore(100, nil))},
			send: func(t *testing.T, e *env) error {
				// Each seal raises the mark: the older one is two versions back.
				if _, err := e.holder.Held(ctx, &pb.HeldRequest{}); err != nil {
					t.Fatal(err)
				}
				e.good, _ = e.holder.dict.Get(svc, scope)
				return callWithToken(t, e.addr, e.older)
			}},
		{name: "wrong client", code: scone.CodeWrongClient, grpc: codes.PermissionDenied,
			opts:  []scone.Option{scone.WithClientBinding(false)},
			sopts: []sconegrpc.ServerOption{sconegrpc.WithClientIdentity(userFromMetadata)},
			send: func(t *testing.T, e *env) error {
				return callWithToken(t, e.addr, e.good, metadata.Pairs("x-user", "mallory"))
			}},
		{name: "over budget on the way out", code: scone.CodeTooLarge, grpc: codes.ResourceExhausted,
			opts: []scone.Option{scone.WithMaxSize(260)}, // one title (with its endpoint and status) fits, the catalog does not
			send: func(t *testing.T, e *env) error {
				// Reserve title after title until the state outgrows the budget.
				for _, b := range shop.Catalog {
					if _, err := e.holder.Reserve(ctx, &pb.Reservation{Isbn: b.Isbn, Quantity: 1}); err != nil {
						return err
					}
					e.good, _ = e.holder.dict.Get(svc, scope)
				}
				t.Fatal("the whole catalog fits the budget")
				return nil
			}},
		{name: "over budget on the way in", code: scone.CodeTooLarge, grpc: codes.ResourceExhausted,
			opts: []scone.Option{scone.WithMaxSize(260)}, // one title (with its endpoint and status) fits, the catalog does not
			send: func(t *testing.T, e *env) error {
				return callWithToken(t, e.addr, append(bytes.Clone(e.good), make([]byte, 260)...))
			}},
		{name: "anti-rollback store full", code: scone.CodeExhausted, grpc: codes.ResourceExhausted,
			opts: []scone.Option{scone.WithMarkStore(scone.NewMemoryMarkStore(1, nil))},
			send: func(t *testing.T, e *env) error {
				// A second session's first seal finds no room for its mark.
				other := dialInventory(t, e.addr)
				_, err := other.Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1})
				return err
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &env{clk: &clock{now: time.Now()}}
			opts := append([]scone.Option{scone.WithClock(e.clk.Now),
				scone.WithMarkStore(scone.NewMemoryMarkStore(100, nil))}, tc.opts...)
			s := newSealer(t, opts...)
			e.sealer = s
			_, e.addr = serveInventory(t, shop.Inventory{}, sconegrpc.ServerOptions(s, tc.sopts...)...)
			e.holder = dialInventory(t, e.addr, sconegrpc.WithMetadataCarrier())
			ctx := metadata.AppendToOutgoingContext(ctx, "x-user", "alice")
			if _, err := e.holder.Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1}); err != nil {
				t.Fatal(err)
			}
			e.older, _ = e.holder.dict.Get(svc, scope)
			if _, err := e.holder.Held(ctx, &pb.HeldRequest{}); err != nil {
				t.Fatal(err)
			}
			e.good, _ = e.holder.dict.Get(svc, scope)
			err := tc.send(t, e)
			if status.Code(err) != tc.grpc || scone.CodeOf(err) != tc.code {
				t.Fatalf("got %v (scone code %v), want %v / %v", err, scone.CodeOf(err), tc.grpc, tc.code)
			}
			if now, _ := e.holder.dict.Get(svc, scope); !bytes.Equal(now, e.good) {
				t.Fatal("the holder's SCONE changed")
			}
		})
	}
}

func flip(b []byte, i int, mask byte) []byte {
	b = bytes.Clone(b)
	b[i] ^= mask
	return b
}

func userFromMetadata(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get("x-user"); len(v) > 0 {
		return v[0]
	}
	return ""
}

// TestStatusMapping checks the mapping of every code, and that the code is
// read back from the status alone.
func TestStatusMapping(t *testing.T) {
	t.Parallel()
	for _, c := range hook.Codes() {
		st := sconegrpc.Status(scone.NewError(c, "x"))
		if st.Code() != sconegrpc.GRPCCode(c) || st.Code() == codes.Unknown || st.Code() == codes.OK {
			t.Errorf("%v maps to %v", c, st.Code())
		}
		// As a client would see it: a status from the wire.
		wire := status.FromProto(st.Proto()).Err()
		if got := grpcframe.StatusCode(wire); got != c {
			t.Errorf("StatusCode(status of %v) = %v", c, got)
		}
	}
	if grpcframe.StatusCode(status.Error(codes.NotFound, "x")) != scone.CodeUnknown {
		t.Error("a plain status has a scone code")
	}
	if st := sconegrpc.Status(errors.New("boom")); st.Code() != codes.Internal {
		t.Errorf("foreign error → %v", st.Code())
	}
}

// callWithToken calls Held with exactly one SCONE, from a holder of its own.
func callWithToken(t *testing.T, addr string, tok []byte, md ...metadata.MD) error {
	t.Helper()
	ctx := context.Background()
	for _, m := range md {
		ctx = metadata.NewOutgoingContext(ctx, m)
	}
	h := &fixedHolder{tok: tok}
	conn, err := grpc.NewClient(addr, append(sconegrpc.DialOptions(sconegrpc.WithHolder(h)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = pb.NewInventoryClient(conn).Held(ctx, &pb.HeldRequest{})
	return err
}

// fixedHolder is a Holder that always attaches one given SCONE.
type fixedHolder struct{ tok []byte }

func (h *fixedHolder) Put([]byte) (bool, error) {
	return false, errors.New("fixedHolder keeps nothing")
}
func (h *fixedHolder) Match(dst [][]byte, _ string) [][]byte { return append(dst, h.tok) }
func (h *fixedHolder) Delete(string, string)                 {}

// TestResetOnFailure: with the opt-in cache semantics, a SCONE that does not
// open starts an empty state, and the reply replaces the bad SCONE.
func TestResetOnFailure(t *testing.T) {
	t.Parallel()
	const svc, scope = "bookstore.v1.Inventory", "/bookstore.v1.Inventory/"
	s := newSealer(t)
	_, addr := serveInventory(t, shop.Inventory{}, sconegrpc.ServerOptions(s, sconegrpc.WithResetOnFailure())...)
	c := dialInventory(t, addr)
	ctx := context.Background()
	for range 3 {
		if _, err := c.Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// Corrupt the held SCONE in place, as a disk error would.
	tok, _ := c.dict.Get(svc, scope)
	tok[len(tok)-1] ^= 1
	r, err := c.Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1})
	if err != nil {
		t.Fatalf("with reset on failure: %v", err)
	}
	if len(r.Items) != 1 || r.Items[0].Quantity != 1 {
		t.Fatalf("the state did not start over: %v", r)
	}
	now, _ := c.dict.Get(svc, scope)
	if h, _ := scone.ParseHeader(now); h.Version != 1 {
		t.Fatalf("the holder keeps version %d, want the new session's 1", h.Version)
	}
}

// TestBackendCallOutsideRequest: a front end's back-end connection
// (WithoutHolder) refuses a call made without a served request's context,
// rather than keeping back-end SCONEs in the front end.
func TestBackendCallOutsideRequest(t *testing.T) {
	t.Parallel()
	_, addr := serveInventory(t, shop.Inventory{}, sconegrpc.ServerOptions(newSealer(t))...)
	conn, err := grpc.NewClient(addr, append(sconegrpc.DialOptions(sconegrpc.WithoutHolder()),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = pb.NewInventoryClient(conn).Held(context.Background(), &pb.HeldRequest{})
	if status.Code(err) != codes.Internal || scone.CodeOf(err) != scone.CodeInternal {
		t.Fatalf("back-end call without a request: %v", err)
	}
}

// groupCart is a Cart whose Get reads the state shared by its group: the
// reservations inventory made in the same SCONE.
type groupCart struct{ pb.UnimplementedCartServer }

var groupState = scone.NewTyped(scone.ProtoCodec[*pb.InventorySession]())

func (groupCart) Get(ctx context.Context, _ *pb.CartGet) (*pb.CartContents, error) {
	s, _, err := groupState.Load(ctx)
	if err != nil {
		return nil, err
	}
	out := &pb.CartContents{}
	for isbn, q := range s.GetHeld() {
		out.Items = append(out.Items, &pb.Item{Isbn: isbn, Quantity: q})
	}
	return out, nil
}

// TestServiceIDGrouping: two gRPC services grouped under one service ID and
// scope share one SCONE, and their calls take turns as one group.
func TestServiceIDGrouping(t *testing.T) {
	t.Parallel()
	s := newSealer(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(sconegrpc.ServerOptions(s,
		sconegrpc.WithServiceID(func(string) string { return "bookstore" }),
		sconegrpc.WithScope(func(string) string { return "/" }))...)
	pb.RegisterInventoryServer(srv, shop.Inventory{})
	pb.RegisterCartServer(srv, groupCart{})
	go srv.Serve(lis)
	defer srv.Stop()
	dict := scone.NewDict()
	conn, err := grpc.NewClient(lis.Addr().String(), append(sconegrpc.DialOptions(sconegrpc.WithHolder(dict),
		sconegrpc.WithCallGroup(func(string) string { return "bookstore" })),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	for _, b := range shop.Catalog[:4] {
		wg.Go(func() {
			if _, err := pb.NewInventoryClient(conn).Reserve(ctx, &pb.Reservation{Isbn: b.Isbn, Quantity: 1}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	c, err := pb.NewCartClient(conn).Get(ctx, &pb.CartGet{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Items) != 4 {
		t.Fatalf("the cart service sees %d of 4 reservations made through inventory", len(c.Items))
	}
	if hs := dict.Headers(); len(hs) != 1 || hs[0].Service != "bookstore" || hs[0].Scope != "/" {
		t.Fatalf("held: %+v", hs)
	}
}

// refusing is a holder that attaches what a Dict holds but cannot keep
// anything new, as a full holder would.
type refusing struct{ *scone.Dict }

func (r refusing) Put([]byte) (bool, error) {
	return false, scone.NewError(scone.CodeExhausted, "holder full")
}

// TestStreamEndReportsHolderError: a stream whose reply SCONEs cannot be
// kept ends with that error, not with a clean io.EOF.
func TestStreamEndReportsHolderError(t *testing.T) {
	t.Parallel()
	d := deploy(t, newSealer(t), 1)
	c := newShopper(t, d)
	ctx := context.Background()
	if _, err := c.AddItem(ctx, &pb.AddItemRequest{Isbn: dune, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	conn, err := shop.DialReplicas(d.Addrs(shop.RoleGateway), sconegrpc.DialOptions(sconegrpc.WithHolder(refusing{c.dict}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := pb.NewGatewayClient(conn).ListItems(ctx, &pb.GetCartRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		_, err = stream.Recv()
		if err != nil {
			break
		}
	}
	if err == io.EOF || scone.CodeOf(err) != scone.CodeExhausted {
		t.Fatalf("stream ended with %v, want the holder's error", err)
	}
}

// TestHeapFlatWithSessions: the server keeps nothing per client, so its heap
// does not grow with the number of sessions it has served.
func TestHeapFlatWithSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("serves 100,000 sessions")
	}
	s := newSealer(t)
	_, addr := serveInventory(t, shop.Inventory{}, sconegrpc.ServerOptions(s)...)
	conn, err := grpc.NewClient(addr, append(sconegrpc.DialOptions(sconegrpc.WithHolder(discard{}), sconegrpc.WithConcurrentCalls()),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewInventoryClient(conn)
	ctx := context.Background()
	run := func(n int) {
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Go(func() {
				for i := w; i < n; i += 16 {
					// Each call starts a new session: the holder keeps nothing.
					if _, err := c.Reserve(ctx, &pb.Reservation{Isbn: shop.Catalog[i%len(shop.Catalog)].Isbn, Quantity: 1}); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	run(2000) // warm up connections and pools
	before := heapInuse()
	const sessions = 100_000
	run(sessions)
	after := heapInuse()
	growth := int64(after) - int64(before)
	t.Logf("heap in use: %d KiB before, %d KiB after %d sessions (%+d KiB)", before>>10, after>>10, sessions, growth>>10)
	if growth > 1<<20 {
		t.Fatalf("heap grew by %d KiB over %d sessions", growth>>10, sessions)
	}
}

func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// discard is a Holder that keeps nothing: every call is a new session.
type discard struct{}

func (discard) Put([]byte) (bool, error)              { return true, nil }
func (discard) Match(dst [][]byte, _ string) [][]byte { return dst }
func (discard) Delete(string, string)                 {}

// down is an anti-rollback store that cannot answer.
type down struct{}

func (down) Get(context.Context, string) ([]byte, uint64, error) {
	return nil, 0, scone.NewError(scone.CodeUnavailable, "store unreachable")
}

func (down) Put(context.Context, string, []byte, uint64, time.Time) error {
	return scone.NewError(scone.CodeUnavailable, "store unreachable")
}

// TestResetOnFailureKeepsServerErrors: a store that is down fails the call
// even with reset-on-failure; the client's valid SCONE is not replaced.
func TestResetOnFailureKeepsServerErrors(t *testing.T) {
	t.Parallel()
	const svc, scope = "bookstore.v1.Inventory", "/bookstore.v1.Inventory/"
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scone.NewSealer(ring)
	if err != nil {
		t.Fatal(err)
	}
	_, addr := serveInventory(t, shop.Inventory{}, sconegrpc.ServerOptions(s)...)
	c := dialInventory(t, addr)
	ctx := context.Background()
	if _, err := c.Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 2}); err != nil {
		t.Fatal(err)
	}
	good, _ := c.dict.Get(svc, scope)
	// The same key, so the SCONE is valid there; only the store is down.
	broken, err := scone.NewSealer(ring, scone.WithMarkStore(down{}))
	if err != nil {
		t.Fatal(err)
	}
	_, addr2 := serveInventory(t, shop.Inventory{}, sconegrpc.ServerOptions(broken, sconegrpc.WithResetOnFailure())...)
	err = callWithToken(t, addr2, good)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("with the store down: %v", err)
	}
}
