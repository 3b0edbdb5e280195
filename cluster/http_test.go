package cluster

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/sconehttp"
)

// counterHTTP is the counter as an HTTP handler: POST /c/add?op=X adds X,
// GET /c/ reads, and ?fail=1 answers 500 after changing the state.
func counterHTTP() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, ok := scone.FromContext(r.Context())
		if !ok {
			http.Error(w, "no state", http.StatusInternalServerError)
			return
		}
		if r.Method == http.MethodPost {
			st.Update(func(d []byte) []byte { return append(d, r.URL.Query().Get("op")+","...) })
		}
		if r.URL.Query().Get("fail") != "" {
			http.Error(w, "failed on purpose", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, string(st.Data()))
	})
}

// serveHTTP sends one request to node's counter behind the Middleware.
func (c *testCluster) serveHTTP(node, client, method, target string, hdr http.Header) *http.Response {
	h := c.node(node).node.Middleware(c.sealer, "sconetest.Counter", "/c/")(counterHTTP())
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header[k] = v
	}
	if client != "" {
		req.Header.Set("Scone-Client", client)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestMiddlewareServesAnyNode: a client's HTTP requests are served by any
// node with the state the last one wrote, on k owners before the response;
// the response carries no SCONE; a failed response and a request that names
// no client keep nothing.
func TestMiddlewareServesAnyNode(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 3, 2, nil)
	live := c.live()
	want := ""
	for i := range 6 {
		op := "a" + string(rune('0'+i))
		resp := c.serveHTTP(live[i%len(live)], "alice", "POST", "/c/add?op="+op, nil)
		want += op + ","
		if got := readBody(t, resp); resp.StatusCode != 200 || got != want {
			t.Fatalf("request %d on %s: %s %q, want %q", i, live[i%len(live)], resp.Status, got, want)
		}
		if len(resp.Header.Values(sconehttp.HeaderSCONE))+len(resp.Cookies()) != 0 {
			t.Fatalf("the response carries SCONEs: %v", resp.Header)
		}
		if n := c.copies("alice"); n != 2 {
			t.Fatalf("after request %d: %d copies, want 2", i, n)
		}
	}
	if resp := c.serveHTTP(live[0], "alice", "POST", "/c/add?op=lost&fail=1", nil); resp.StatusCode != 500 {
		t.Fatalf("failing handler: %s", resp.Status)
	}
	if got := readBody(t, c.serveHTTP(live[1], "alice", "GET", "/c/", nil)); got != want {
		t.Fatalf("after a failed response: %q, want %q", got, want)
	}
	if got := readBody(t, c.serveHTTP(live[1], "", "POST", "/c/add?op=x", nil)); got != "x," {
		t.Fatalf("a request naming no client: %q, want a state of its own", got)
	}
	if got := readBody(t, c.serveHTTP(live[2], "alice", "GET", "/other/", nil)); got != "" {
		t.Fatalf("a path out of the scope restored %q", got)
	}
}

// TestMiddlewareRefuses: a request the cluster cannot serve fails with the
// status of its scone.Code, and one from another origin never runs.
func TestMiddlewareRefuses(t *testing.T) {
	t.Parallel()
	c := newTestCluster(t, 2, 2, nil)
	live := c.live()
	resp := c.serveHTTP(live[0], "bob", "POST", "/c/add?op=x", http.Header{"Sec-Fetch-Site": {"cross-site"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a cross-site request: %s", resp.Status)
	}
	c.kill(live[1])
	c.waitMembers(1)
	resp = c.serveHTTP(live[0], "bob", "POST", "/c/add?op=x", nil)
	if resp.StatusCode != http.StatusServiceUnavailable || sconehttp.ResponseCode(resp) != scone.CodeUnavailable {
		t.Fatalf("with fewer than k members: %s %v", resp.Status, resp.Header)
	}
	if b := readBody(t, resp); !strings.Contains(b, "fewer than the 2 copies") {
		t.Fatalf("refusal body %q", b)
	}
}
