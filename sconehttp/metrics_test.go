package sconehttp_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/hookmetrics/hookmetricstest"
	"github.com/scone-project/scone/sconegrpc"
	"github.com/scone-project/scone/sconehttp"
)

// visitOrDrop is visit, or the session's end with ?drop=1.
func visitOrDrop(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("drop") != "" {
		st, _ := scone.FromContext(r.Context())
		st.Drop()
		return
	}
	visit(w, r)
}

// metricsServer serves visitOrDrop as service "counter", with metrics on reg.
func metricsServer(t testing.TB, s *scone.Sealer, reg prometheus.Registerer) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(sconehttp.Middleware(s, "counter", sconehttp.WithMetrics(reg))(http.HandlerFunc(visitOrDrop)))
	t.Cleanup(srv.Close)
	return srv
}

// TestMetrics checks every sample after a new session, restored requests
// (one whose handler fails), a tampered cookie, a SCONE over the cookie
// budget, and the session's end.
func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	srv := metricsServer(t, newSealer(t), reg)
	c := jarClient(t)
	for _, want := range []string{"1", "2"} { // new, then restored
		if resp, body := get(t, c, srv.URL+"/visit"); body != want {
			t.Fatalf("visit: %s %q, want %q", resp.Status, body, want)
		}
	}
	cookies := c.Jar.Cookies(mustURL(srv.URL))
	if len(cookies) != 1 {
		t.Fatalf("jar holds %d cookies", len(cookies))
	}
	tok, err := scone.DecodeText(cookies[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	tok[len(tok)-1] ^= 1
	req, _ := http.NewRequest("GET", srv.URL+"/visit", nil)
	req.AddCookie(&http.Cookie{Name: cookies[0].Name, Value: scone.EncodeText(tok)})
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sconehttp.ResponseCode(resp) != scone.CodeTampered {
		t.Fatalf("tampered cookie: %s", resp.Status)
	}
	if resp, _ := get(t, c, srv.URL+"/visit?fail=1"); resp.StatusCode != http.StatusConflict { // restored, handler fails
		t.Fatalf("failing visit: %s", resp.Status)
	}
	if resp, _ := get(t, c, srv.URL+"/visit?note=5000"); sconehttp.ResponseCode(resp) != scone.CodeTooLarge { // fails after sealing
		t.Fatalf("over the cookie budget: %s", resp.Status)
	}
	if resp, _ := get(t, c, srv.URL+"/visit?drop=1"); resp.StatusCode != http.StatusOK { // restored, dropped
		t.Fatalf("drop: %s", resp.Status)
	}
	for _, ck := range c.Jar.Cookies(mustURL(srv.URL)) {
		if ck.Value != "" { // the response to a drop empties the cookie
			t.Fatalf("the jar holds %s after the session's end", ck.Name)
		}
	}

	want := map[string]float64{
		`scone_hook_requests_total{service="counter",state="new",transport="http"}`:            1,
		`scone_hook_requests_total{service="counter",state="restored",transport="http"}`:       3,
		`scone_hook_requests_total{service="counter",state="failed",transport="http"}`:         2,
		`scone_hook_errors_total{code="tampered",service="counter",transport="http"}`:          1,
		`scone_hook_errors_total{code="too_large",service="counter",transport="http"}`:         1,
		`scone_hook_scones_sealed_total{outcome="updated",service="counter",transport="http"}`: 2,
		`scone_hook_scones_sealed_total{outcome="dropped",service="counter",transport="http"}`: 1,
		`scone_hook_scone_bytes_count{direction="in",transport="http"}`:                        5,
		`scone_hook_scone_bytes_count{direction="out",transport="http"}`:                       2,
		`scone_hook_seconds_count{phase="restore",transport="http"}`:                           6,
		`scone_hook_seconds_count{phase="seal",transport="http"}`:                              5,
	}
	if d := hookmetricstest.Diff(hookmetricstest.Samples(t, reg), want); d != "" {
		t.Error(d)
	}
}

// TestMetricsSharedRegistry: the HTTP and gRPC hooks of one process, and
// two HTTP services, record into one registry.
func TestMetricsSharedRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	s := newSealer(t)
	counter := metricsServer(t, s, reg)
	other := httptest.NewServer(sconehttp.Middleware(s, "other", sconehttp.WithMetrics(reg))(http.HandlerFunc(visit)))
	defer other.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(sconegrpc.ServerOptions(s, sconegrpc.WithMetrics(reg))...)
	pb.RegisterInventoryServer(gs, shop.Inventory{})
	go gs.Serve(lis)
	defer gs.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), append(sconegrpc.DialOptions(),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	c := jarClient(t)
	get(t, c, counter.URL+"/visit")
	get(t, c, counter.URL+"/visit")
	get(t, c, other.URL+"/visit")
	if _, err := pb.NewInventoryClient(conn).Reserve(context.Background(), &pb.Reservation{Isbn: "9780441013593", Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	got := hookmetricstest.Samples(t, reg)
	for series, want := range map[string]float64{
		`scone_hook_requests_total{service="counter",state="new",transport="http"}`:                1,
		`scone_hook_requests_total{service="counter",state="restored",transport="http"}`:           1,
		`scone_hook_requests_total{service="other",state="new",transport="http"}`:                  1,
		`scone_hook_requests_total{service="bookstore.v1.Inventory",state="new",transport="grpc"}`: 1,
		`scone_hook_seconds_count{phase="restore",transport="http"}`:                               3,
		`scone_hook_seconds_count{phase="restore",transport="grpc"}`:                               1,
	} {
		if got[series] != want {
			t.Errorf("%s = %v, want %v", series, got[series], want)
		}
	}
	for series := range got {
		if strings.Contains(series, `state="failed"`) {
			t.Errorf("%s: a request failed", series)
		}
	}
}
