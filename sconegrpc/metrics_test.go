package sconegrpc_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/hookmetrics/hookmetricstest"
	"github.com/scone-project/scone/sconegrpc"
)

// TestMetrics serves an inventory with WithMetrics and checks every sample
// after a new session, restored calls (one whose handler fails), a
// tampered SCONE, the session's end, and a call from a plain client.
func TestMetrics(t *testing.T) {
	t.Parallel()
	const svc, scope = "bookstore.v1.Inventory", "/bookstore.v1.Inventory/"
	reg := prometheus.NewRegistry()
	_, addr := serveInventory(t, shop.Inventory{}, sconegrpc.ServerOptions(newSealer(t), sconegrpc.WithMetrics(reg))...)
	c := dialInventory(t, addr)
	ctx := context.Background()
	if _, err := c.Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1}); err != nil { // new
		t.Fatal(err)
	}
	if _, err := c.Held(ctx, &pb.HeldRequest{}); err != nil { // restored, re-sealed
		t.Fatal(err)
	}
	good, _ := c.dict.Get(svc, scope)
	if err := callWithToken(t, addr, flip(good, len(good)-1, 1)); scone.CodeOf(err) != scone.CodeTampered {
		t.Fatalf("tampered: %v", err)
	}
	_, err := c.Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: shop.MaxPerTitle}) // restored, handler fails
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("reserving past the limit: %v", err)
	}
	if _, err := c.Release(ctx, &pb.Reservation{Isbn: dune, Quantity: 1}); err != nil { // restored, dropped
		t.Fatal(err)
	}
	if _, ok := c.dict.Get(svc, scope); ok {
		t.Fatal("the holder kept the SCONE of an ended session")
	}
	plain, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := pb.NewInventoryClient(plain).Lookup(ctx, &pb.LookupRequest{Isbn: dune}); err != nil {
		t.Fatal(err)
	}

	want := map[string]float64{
		`scone_hook_requests_total{service="bookstore.v1.Inventory",state="new",transport="grpc"}`:            1,
		`scone_hook_requests_total{service="bookstore.v1.Inventory",state="restored",transport="grpc"}`:       3,
		`scone_hook_requests_total{service="bookstore.v1.Inventory",state="failed",transport="grpc"}`:         1,
		`scone_hook_requests_total{service="bookstore.v1.Inventory",state="plain",transport="grpc"}`:          1,
		`scone_hook_errors_total{code="tampered",service="bookstore.v1.Inventory",transport="grpc"}`:          1,
		`scone_hook_scones_sealed_total{outcome="updated",service="bookstore.v1.Inventory",transport="grpc"}`: 2,
		`scone_hook_scones_sealed_total{outcome="dropped",service="bookstore.v1.Inventory",transport="grpc"}`: 1,
		`scone_hook_scone_bytes_count{direction="in",transport="grpc"}`:                                       4,
		`scone_hook_scone_bytes_count{direction="out",transport="grpc"}`:                                      2,
		`scone_hook_seconds_count{phase="restore",transport="grpc"}`:                                          6,
		`scone_hook_seconds_count{phase="seal",transport="grpc"}`:                                             5,
	}
	if d := hookmetricstest.Diff(hookmetricstest.Samples(t, reg), want); d != "" {
		t.Error(d)
	}
}

// lister is a gateway whose ListItems counts its calls in the state and
// streams nothing.
type lister struct{ pb.UnimplementedGatewayServer }

func (lister) ListItems(_ *pb.GetCartRequest, ss grpc.ServerStreamingServer[pb.CartLine]) error {
	st, _ := scone.FromContext(ss.Context())
	st.Update(func(d []byte) []byte { return append(d, '.') })
	return nil
}

// TestMetricsStream checks the stream interceptor's samples: a new session
// and a restored one.
func TestMetricsStream(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(sconegrpc.ServerOptions(newSealer(t), sconegrpc.WithMetrics(reg))...)
	pb.RegisterGatewayServer(srv, lister{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), append(sconegrpc.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for range 2 {
		stream, err := pb.NewGatewayClient(conn).ListItems(context.Background(), &pb.GetCartRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.Recv(); err != io.EOF {
			t.Fatalf("Recv: %v", err)
		}
	}
	want := map[string]float64{
		`scone_hook_requests_total{service="bookstore.v1.Gateway",state="new",transport="grpc"}`:            1,
		`scone_hook_requests_total{service="bookstore.v1.Gateway",state="restored",transport="grpc"}`:       1,
		`scone_hook_scones_sealed_total{outcome="updated",service="bookstore.v1.Gateway",transport="grpc"}`: 2,
		`scone_hook_scone_bytes_count{direction="in",transport="grpc"}`:                                     1,
		`scone_hook_scone_bytes_count{direction="out",transport="grpc"}`:                                    2,
		`scone_hook_seconds_count{phase="restore",transport="grpc"}`:                                        2,
		`scone_hook_seconds_count{phase="seal",transport="grpc"}`:                                           2,
	}
	if d := hookmetricstest.Diff(hookmetricstest.Samples(t, reg), want); d != "" {
		t.Error(d)
	}
}

// TestMetricsSharedRegistry: two servers, of two service IDs, record into
// one registry.
func TestMetricsSharedRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := newSealer(t)
	var clients []inventoryClient
	for _, id := range []string{"inventory-a", "inventory-b"} {
		serviceID := sconegrpc.WithServiceID(func(string) string { return id })
		_, addr := serveInventory(t, shop.Inventory{}, sconegrpc.ServerOptions(s, sconegrpc.WithMetrics(reg), serviceID)...)
		clients = append(clients, dialInventory(t, addr))
	}
	for i, c := range clients {
		for range i + 1 {
			if _, err := c.Reserve(context.Background(), &pb.Reservation{Isbn: dune, Quantity: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := map[string]float64{
		`scone_hook_requests_total{service="inventory-a",state="new",transport="grpc"}`:            1,
		`scone_hook_scones_sealed_total{outcome="updated",service="inventory-a",transport="grpc"}`: 1,
		`scone_hook_requests_total{service="inventory-b",state="new",transport="grpc"}`:            1,
		`scone_hook_requests_total{service="inventory-b",state="restored",transport="grpc"}`:       1,
		`scone_hook_scones_sealed_total{outcome="updated",service="inventory-b",transport="grpc"}`: 2,
		`scone_hook_scone_bytes_count{direction="in",transport="grpc"}`:                            1,
		`scone_hook_scone_bytes_count{direction="out",transport="grpc"}`:                           3,
		`scone_hook_seconds_count{phase="restore",transport="grpc"}`:                               3,
		`scone_hook_seconds_count{phase="seal",transport="grpc"}`:                                  3,
	}
	if d := hookmetricstest.Diff(hookmetricstest.Samples(t, reg), want); d != "" {
		t.Error(d)
	}
}

// TestMetricsRegistrationPanics: a registry that holds another metric of
// one of the names makes the interceptors panic when they are made.
func TestMetricsRegistrationPanics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "scone_hook_requests_total", Help: "Another."}))
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "scone_hook_requests_total") {
			t.Fatalf("recovered %v, want a panic naming the metric", r)
		}
	}()
	opt := sconegrpc.WithMetrics(reg) // the option itself does not register
	sconegrpc.UnaryServerInterceptor(newSealer(t), opt)
}
