package relay_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/relay"
	"github.com/scone-project/scone/sconehttp"
)

// counterHandler counts a client's requests in its SCONE, and answers with
// the count and the scone-client header it saw. DELETE ends the session.
func counterHandler(seen *atomic.Int32) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, _ := scone.FromContext(r.Context())
		if r.Header.Get("Scone-Client") != "" {
			seen.Add(1)
		}
		if r.Method == http.MethodDelete {
			st.Drop()
			return
		}
		n, _ := strconv.Atoi(string(st.Data()))
		st.SetData([]byte(strconv.Itoa(n + 1)))
		io.WriteString(w, strconv.Itoa(n+1))
	})
}

// startHTTPUpstream serves the counter behind sconehttp.Middleware on
// 127.0.0.1.
func startHTTPUpstream(t *testing.T, sealer *scone.Sealer, seen *atomic.Int32) *httptest.Server {
	t.Helper()
	h := sconehttp.Middleware(sealer, "counter", sconehttp.WithScope(sconehttp.StaticScope("/c/")))(counterHandler(seen))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// startHTTPRelay serves an HTTP relay for cfg on 127.0.0.1 and returns its
// base URL.
func startHTTPRelay(t *testing.T, cfg relay.Config) string {
	t.Helper()
	r, err := relay.NewHTTP(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go r.Serve(lis)
	t.Cleanup(r.Stop)
	return "http://" + lis.Addr().String()
}

// do sends a request through the relay as client (none: no header).
func do(t *testing.T, method, url, client string, hdr http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if client != "" {
		req.Header.Set("Scone-Client", client)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func hostOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// TestHTTPRelayHolds: the relay keeps each named client's SCONEs apart,
// takes them off the responses, never forwards the identity header, and
// forgets a session its server ended.
func TestHTTPRelayHolds(t *testing.T) {
	t.Parallel()
	sealer := newSealer(t, newRing(t))
	var seen atomic.Int32
	up1, up2 := startHTTPUpstream(t, sealer, &seen), startHTTPUpstream(t, sealer, &seen)
	store := relay.NewMemoryStore(relay.DefaultMemoryConfig())
	cfg := relay.DefaultConfig()
	cfg.Upstreams = []string{hostOf(up1), hostOf(up2)}
	cfg.IdentityHeader = "scone-client"
	cfg.Store = store
	url := startHTTPRelay(t, cfg) + "/c/count"

	for i, want := range []string{"1", "2", "3"} {
		resp := do(t, "POST", url, "alice", nil)
		if got := body(t, resp); resp.StatusCode != 200 || got != want {
			t.Fatalf("alice's call %d: %s %q, want %q", i+1, resp.Status, got, want)
		}
		if len(resp.Header.Values(sconehttp.HeaderSCONE)) != 0 || len(resp.Cookies()) != 0 {
			t.Fatalf("the client got SCONEs: %v", resp.Header)
		}
	}
	if got := body(t, do(t, "POST", url, "bob", nil)); got != "1" {
		t.Fatalf("bob's first call: %q, want 1", got)
	}
	if clients, scones := store.Len(); clients != 2 || scones != 2 {
		t.Fatalf("store holds %d SCONEs of %d clients, want 2 of 2", scones, clients)
	}
	if n := seen.Load(); n != 0 {
		t.Fatalf("%d requests reached an upstream with the identity header", n)
	}
	if resp := do(t, "DELETE", url, "alice", nil); resp.StatusCode != 200 {
		t.Fatalf("end of session: %s", resp.Status)
	}
	if got := body(t, do(t, "POST", url, "alice", nil)); got != "1" {
		t.Fatalf("after the end of alice's session: %q, want a new one", got)
	}
}

// TestHTTPRelayPassThrough: a request that names no client, or brings its
// own SCONEs, is the client's to hold.
func TestHTTPRelayPassThrough(t *testing.T) {
	t.Parallel()
	sealer := newSealer(t, newRing(t))
	var seen atomic.Int32
	up := startHTTPUpstream(t, sealer, &seen)
	store := relay.NewMemoryStore(relay.DefaultMemoryConfig())
	cfg := relay.DefaultConfig()
	cfg.Upstreams = []string{hostOf(up)}
	cfg.IdentityHeader = "scone-client"
	cfg.Store = store
	url := startHTTPRelay(t, cfg) + "/c/count"

	if resp := do(t, "POST", url, "", nil); len(resp.Cookies()) != 1 {
		t.Fatalf("an unnamed client got no cookie: %v", resp.Header)
	}
	resp := do(t, "POST", url, "carol", http.Header{sconehttp.HeaderSCONE: {""}})
	if len(resp.Header.Values(sconehttp.HeaderSCONE)) != 1 {
		t.Fatalf("a client with the header carrier got no SCONE: %v", resp.Header)
	}
	if clients, scones := store.Len(); scones != 0 {
		t.Fatalf("store holds %d SCONEs of %d clients, want none", scones, clients)
	}
}

// TestHTTPRelayResends: a request whose upstream refuses the connection is
// re-sent, with the same SCONEs, to the next one: no request fails and none
// is applied twice.
func TestHTTPRelayResends(t *testing.T) {
	t.Parallel()
	sealer := newSealer(t, newRing(t))
	var seen atomic.Int32
	up := startHTTPUpstream(t, sealer, &seen)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close() // connections to it are refused
	cfg := relay.DefaultConfig()
	cfg.Upstreams = []string{deadAddr, hostOf(up)}
	cfg.IdentityHeader = "scone-client"
	url := startHTTPRelay(t, cfg) + "/c/count"
	for i := range 6 {
		resp := do(t, "POST", url, "dave", nil)
		if got := body(t, resp); resp.StatusCode != 200 || got != strconv.Itoa(i+1) {
			t.Fatalf("call %d: %s %q", i+1, resp.Status, got)
		}
	}
}

// failingStore refuses every reply.
type failingStore struct{ relay.Store }

func (failingStore) Apply(context.Context, string, *hook.Reply, [][]byte) error {
	return scone.NewError(scone.CodeConflict, "another request changed the state first")
}

// TestHTTPRelayStoreRefuses: a response whose SCONEs the store does not
// take fails with the status of the store's code, and the next request
// starts from what the store held.
func TestHTTPRelayStoreRefuses(t *testing.T) {
	t.Parallel()
	sealer := newSealer(t, newRing(t))
	var seen atomic.Int32
	up := startHTTPUpstream(t, sealer, &seen)
	cfg := relay.DefaultConfig()
	cfg.Upstreams = []string{hostOf(up)}
	cfg.IdentityHeader = "scone-client"
	cfg.Store = failingStore{relay.NewMemoryStore(relay.DefaultMemoryConfig())}
	url := startHTTPRelay(t, cfg) + "/c/count"
	resp := do(t, "POST", url, "erin", nil)
	if resp.StatusCode != http.StatusConflict || sconehttp.ResponseCode(resp) != scone.CodeConflict {
		t.Fatalf("refused by the store: %s %v", resp.Status, resp.Header)
	}
	if body(t, resp) == "1" || len(resp.Header.Values(sconehttp.HeaderSCONE)) != 0 {
		t.Fatal("the response the store refused reached the client")
	}
}
