package sconehttp_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/sconehttp"
)

// The attacks of a web page, a page script and a sibling subdomain on the
// cookie carrier, and how a browser user gets out of a SCONE that does not
// open (docs/security.md, "Browsers").

// countingServer serves visit under /shop/ (scope "/shop/") and /root/
// (scope "/", as service "root"), with opts, and counts the handler's runs.
func countingServer(t *testing.T, s *scone.Sealer, tls bool, opts ...sconehttp.Option) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	runs := new(atomic.Int64)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { runs.Add(1); visit(w, r) })
	mux := http.NewServeMux()
	mux.Handle("/shop/", sconehttp.Middleware(s, "counter", append([]sconehttp.Option{sconehttp.WithScope(sconehttp.StaticScope("/shop/"))}, opts...)...)(h))
	mux.Handle("/root/", sconehttp.Middleware(s, "root", opts...)(h))
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(mux)
	} else {
		srv = httptest.NewServer(mux)
	}
	t.Cleanup(srv.Close)
	return srv, runs
}

// client returns a client of srv with a cookie jar of its own.
func client(t *testing.T, srv *httptest.Server) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := *srv.Client() // a copy: srv.Client returns the same one each time
	c.Jar = jar
	return &c
}

// do sends a request with headers (name, value, name, value...), and
// returns the response with its body read.
func do(t *testing.T, c *http.Client, method, url string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header[headers[i]] = []string{headers[i+1]}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestCrossSiteWriteRefused: a page on another site makes the user's
// browser POST to the service, with the user's cookies. It gets 403; the
// handler does not run, no cookie is set, and the session is unchanged.
func TestCrossSiteWriteRefused(t *testing.T) {
	t.Parallel()
	srv, runs := countingServer(t, newSealer(t), false)
	c := client(t, srv)
	for range 2 {
		do(t, c, "POST", srv.URL+"/shop/visit")
	}
	for _, method := range []string{"POST", "PUT", "DELETE", "PATCH"} {
		resp, _ := do(t, c, method, srv.URL+"/shop/visit", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site")
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Set-Cookie") != "" {
			t.Errorf("cross-site %s: %s, Set-Cookie %q", method, resp.Status, resp.Header.Get("Set-Cookie"))
		}
	}
	// An older browser, with no Sec-Fetch-Site: the Origin tells.
	if resp, _ := do(t, c, "POST", srv.URL+"/shop/visit", "Origin", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-origin POST without Sec-Fetch-Site: %s", resp.Status)
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("the handler ran %d times, want 2", n)
	}
	if _, body := do(t, c, "GET", srv.URL+"/shop/visit"); body != "3" {
		t.Fatalf("the session after the refusals: %q, want 3", body)
	}
}

// TestSameOriginAndServiceWritesPass: the protection lets in the service's
// own pages, clients that are not browsers (no Origin, no Sec-Fetch-Site,
// as a sconehttp.Transport), and the origins it is told to trust; and
// WithoutCrossOriginProtection lets in everything.
func TestSameOriginAndServiceWritesPass(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, newSealer(t), false, sconehttp.WithTrustedOrigins("https://app.example"))
	c := client(t, srv)
	for i, headers := range [][]string{
		{"Origin", srv.URL, "Sec-Fetch-Site", "same-origin"},
		{"Origin", srv.URL},
		{},
		{"Origin", "https://app.example", "Sec-Fetch-Site", "cross-site"},
	} {
		if resp, body := do(t, c, "POST", srv.URL+"/shop/visit", headers...); resp.StatusCode != 200 || body != strconv.Itoa(i+1) {
			t.Errorf("POST with %q: %s %q", headers, resp.Status, body)
		}
	}
	tr := &http.Client{Transport: sconehttp.NewTransport(nil)}
	if resp, body := do(t, tr, "POST", srv.URL+"/shop/visit"); resp.StatusCode != 200 || body != "1" {
		t.Errorf("POST from a Transport: %s %q", resp.Status, body)
	}

	open, _ := countingServer(t, newSealer(t), false, sconehttp.WithoutCrossOriginProtection())
	if resp, _ := do(t, client(t, open), "POST", open.URL+"/shop/visit", "Origin", "https://evil.example", "Sec-Fetch-Site", "cross-site"); resp.StatusCode != 200 {
		t.Errorf("WithoutCrossOriginProtection: %s", resp.Status)
	}
}

// TestCookieTokenNeverInHeader: page script cannot read the HttpOnly
// cookies, so it sends an empty Scone header with them, asking for the
// reply in headers. The reply comes in cookies only; and script that adds
// a SCONE of its own to the header is refused.
func TestCookieTokenNeverInHeader(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, newSealer(t), false)
	c := client(t, srv)
	do(t, c, "GET", srv.URL+"/shop/visit")
	resp, body := do(t, c, "POST", srv.URL+"/shop/visit", sconehttp.HeaderSCONE, "")
	if resp.StatusCode != 200 || body != "2" {
		t.Fatalf("%s %q", resp.Status, body)
	}
	set := resp.Cookies()
	if len(set) != 1 || set[0].Value == "" {
		t.Fatalf("the reply's cookies: %v", set)
	}
	for name, values := range resp.Header {
		for _, v := range values {
			if name != "Set-Cookie" && (strings.Contains(v, set[0].Value) || strings.HasPrefix(name, sconehttp.HeaderSCONE)) {
				t.Errorf("response header %s: %q", name, v)
			}
		}
	}
	// A SCONE in the header and others in cookies: 400, nothing sealed.
	other, _ := countingServer(t, newSealer(t), false)
	tc := &http.Client{Transport: sconehttp.NewTransport(nil)}
	do(t, tc, "GET", other.URL+"/shop/visit")
	tokens := tc.Transport.(*sconehttp.Transport).Holder(strings.TrimPrefix(other.URL, "http://")).(*scone.Dict)
	text := scone.EncodeText(tokens.Tokens()[0])
	resp, _ = do(t, c, "GET", srv.URL+"/shop/visit", sconehttp.HeaderSCONE, text)
	if resp.StatusCode != http.StatusBadRequest || sconehttp.ResponseCode(resp) != scone.CodeMalformed ||
		resp.Header.Get("Set-Cookie") != "" || resp.Header.Get(sconehttp.HeaderSCONE) != "" {
		t.Fatalf("SCONEs in both carriers: %s %v, Set-Cookie %q", resp.Status, sconehttp.ResponseCode(resp), resp.Header.Get("Set-Cookie"))
	}
}

// TestCookiePrefixes: over TLS the cookies are Secure, and named with the
// strongest prefix their path allows: "__Host-" at "/", "__Secure-"
// elsewhere. The browser's next request restores its session from them.
func TestCookiePrefixes(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, newSealer(t), true)
	c := client(t, srv)
	for path, want := range map[string]string{"/shop/visit": "__Secure-scone-counter", "/root/visit": "__Host-scone-root"} {
		for i := 1; i <= 2; i++ {
			resp, body := do(t, c, "GET", srv.URL+path)
			set := resp.Cookies()
			if body != strconv.Itoa(i) || len(set) != 1 || set[0].Name != want || !set[0].Secure || !set[0].HttpOnly {
				t.Fatalf("%s, visit %d: %q, Set-Cookie %q", path, i, body, resp.Header.Values("Set-Cookie"))
			}
			if wantPath := path[:strings.LastIndexByte(path, '/')+1]; want == "__Host-scone-root" && set[0].Path != "/" ||
				want != "__Host-scone-root" && set[0].Path != wantPath {
				t.Fatalf("%s: path %q", want, set[0].Path)
			}
		}
	}
}

// TestSubdomainCookieIgnored: a sibling subdomain (or anyone on a plain
// HTTP connection to the domain) can set a cookie without a prefix,
// scoped to the service's path. Planted with a valid SCONE of a newer
// version (from the attacker's own session), it would win over the user's.
// It is ignored: only cookies with the prefix the service sets count.
func TestSubdomainCookieIgnored(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, newSealer(t), true)
	victim, attacker := client(t, srv), client(t, srv)
	do(t, victim, "GET", srv.URL+"/shop/visit")
	var planted string
	for range 5 {
		resp, _ := do(t, attacker, "GET", srv.URL+"/shop/visit")
		planted = resp.Cookies()[0].Value
	}
	u := mustURL(srv.URL + "/shop/")
	victim.Jar.SetCookies(u, []*http.Cookie{{Name: "scone-counter", Value: planted, Path: "/shop/"}})
	if len(victim.Jar.Cookies(u)) != 2 {
		t.Fatalf("the victim's jar: %v", victim.Jar.Cookies(u))
	}
	if _, body := do(t, victim, "GET", srv.URL+"/shop/visit"); body != "2" {
		t.Fatalf("the victim's visit with a planted cookie: %q, want its own session's 2", body)
	}
}

// TestLoopbackPlainHTTPCookies: over plain HTTP to 127.0.0.1 (a developer's
// machine, or curl in a test) the cookies are neither Secure nor prefixed;
// the same server reached under another name (a TLS-terminating proxy in
// front) sets Secure, prefixed cookies.
func TestLoopbackPlainHTTPCookies(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, newSealer(t), false)
	resp, _ := do(t, http.DefaultClient, "GET", srv.URL+"/shop/visit")
	if set := resp.Cookies(); len(set) != 1 || set[0].Name != "scone-counter" || set[0].Secure {
		t.Fatalf("loopback: Set-Cookie %q", resp.Header.Values("Set-Cookie"))
	}
	req, _ := http.NewRequest("GET", srv.URL+"/shop/visit", nil)
	req.Host = "shop.example"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if set := resp.Cookies(); len(set) != 1 || set[0].Name != "__Secure-scone-counter" || !set[0].Secure {
		t.Fatalf("behind a proxy: Set-Cookie %q", resp.Header.Values("Set-Cookie"))
	}
}

// TestBadCookieOneErrorThenFreshSession: the server now has another key,
// so the browser's cookie does not open. The user sees one error (401, the
// code in a problem document), whose response empties the cookie; the next
// request starts a new session. The failing request itself changes no
// state.
func TestBadCookieOneErrorThenFreshSession(t *testing.T) {
	t.Parallel()
	srv, _ := countingServer(t, newSealer(t), false)
	c := client(t, srv)
	do(t, c, "GET", srv.URL+"/shop/visit")
	do(t, c, "GET", srv.URL+"/shop/visit")
	// Another server on the same host, with another key: the jar sends it
	// the same cookies (they ignore the port).
	srv2, runs := countingServer(t, newSealer(t), false)
	resp, body := do(t, c, "GET", srv2.URL+"/shop/visit")
	if resp.StatusCode != http.StatusUnauthorized || sconehttp.ResponseCode(resp) == scone.CodeUnknown || !strings.Contains(body, `"code"`) {
		t.Fatalf("the old cookie: %s %v %q", resp.Status, sconehttp.ResponseCode(resp), body)
	}
	if set := resp.Cookies(); len(set) != 1 || set[0].Name != "scone-counter" || set[0].Value != "" || set[0].MaxAge != 1 || set[0].Path != "/shop/" {
		t.Fatalf("the error's Set-Cookie %q, want the cookie emptied", resp.Header.Values("Set-Cookie"))
	}
	if runs.Load() != 0 {
		t.Fatal("the handler ran for a SCONE that did not open")
	}
	for want := 1; want <= 2; want++ {
		if resp, body := do(t, c, "GET", srv2.URL+"/shop/visit"); resp.StatusCode != 200 || body != strconv.Itoa(want) {
			t.Fatalf("after the error, visit %d: %s %q", want, resp.Status, body)
		}
	}
	// The header carrier keeps today's rule: the holder keeps what it had.
	tc := &http.Client{Transport: sconehttp.NewTransport(nil)}
	do(t, tc, "GET", srv.URL+"/shop/visit")
	host := strings.TrimPrefix(srv.URL, "http://")
	tr := tc.Transport.(*sconehttp.Transport)
	tr.Holder(strings.TrimPrefix(srv2.URL, "http://")).(*scone.Dict).Put(tr.Holder(host).(*scone.Dict).Tokens()[0])
	if resp, _ := do(t, tc, "GET", srv2.URL+"/shop/visit"); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Set-Cookie") != "" {
		t.Fatalf("header carrier: %s, Set-Cookie %q", resp.Status, resp.Header.Get("Set-Cookie"))
	}
	if n, _ := tr.Holder(strings.TrimPrefix(srv2.URL, "http://")).(*scone.Dict).Len(); n != 1 {
		t.Fatalf("the Transport holds %d SCONEs after the refusal, want 1", n)
	}
}

// TestBadBackEndCookieCleared: the front end's SCONE opens, but a back
// end's cookie was changed (tampered). The front end's SCONE bundles the
// back end's, so the Middleware refuses the request (bundle_mismatch),
// empties the request's SCONE cookies with it, and the next request starts
// over.
func TestBadBackEndCookieCleared(t *testing.T) {
	t.Parallel()
	s := newSealer(t)
	back := httptest.NewServer(sconehttp.Middleware(s, "back")(http.HandlerFunc(visit)))
	defer back.Close()
	backend := &http.Client{Transport: sconehttp.NewTransport(nil)}
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, _ := scone.FromContext(r.Context())
		st.SetData(append(st.Data(), 'f'))
		req, _ := http.NewRequestWithContext(r.Context(), "GET", back.URL+"/visit", nil)
		resp, err := backend.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if c := sconehttp.ResponseCode(resp); c != scone.CodeUnknown {
			sconehttp.WriteError(w, scone.NewError(c, "the back end refused its SCONE"))
			return
		}
		fmt.Fprintf(w, "front %d, back %s", len(st.Data()), b)
	})
	mux := http.NewServeMux()
	mux.Handle("/front/", sconehttp.Middleware(s, "front", sconehttp.WithScope(sconehttp.StaticScope("/front/")))(front))
	fs := httptest.NewServer(mux)
	defer fs.Close()
	c := client(t, fs)
	do(t, c, "GET", fs.URL+"/front/x")
	do(t, c, "GET", fs.URL+"/front/x")
	u := mustURL(fs.URL + "/front/")
	for _, ck := range c.Jar.Cookies(u) {
		if ck.Name == "scone-back" {
			tok, _ := scone.DecodeText(ck.Value)
			tok[len(tok)-3] ^= 1
			c.Jar.SetCookies(u, []*http.Cookie{{Name: ck.Name, Value: scone.EncodeText(tok), Path: "/front/"}})
		}
	}
	// The front end's SCONE bundles the back end's: a changed one is
	// refused before any back end sees it, and the session starts over.
	resp, _ := do(t, c, "GET", fs.URL+"/front/x")
	if resp.StatusCode != http.StatusConflict || sconehttp.ResponseCode(resp) != scone.CodeBundle {
		t.Fatalf("tampered back-end cookie: %s %v", resp.Status, sconehttp.ResponseCode(resp))
	}
	if set := resp.Cookies(); len(set) != 2 || set[0].Value != "" || set[1].Value != "" {
		t.Fatalf("the error's Set-Cookie %q, want every SCONE cookie emptied", resp.Header.Values("Set-Cookie"))
	}
	if _, body := do(t, c, "GET", fs.URL+"/front/x"); body != "front 1, back 1" {
		t.Fatalf("after the error: %q, want new sessions", body)
	}
}
