package sconehttp

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
)

func TestCookieName(t *testing.T) {
	t.Parallel()
	for service, want := range map[string]string{
		"bookstore.v1.Gateway": "scone-bookstore.v1.Gateway",
		"cart":                 "scone-cart",
		"a b/c":                "scone-~YSBiL2M",
	} {
		if got := cookieName(service); got != want {
			t.Errorf("cookieName(%q) = %q, want %q", service, got, want)
		}
	}
}

func sealed(t testing.TB, service, scope string) []byte {
	t.Helper()
	ring, _ := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	s, _ := scone.NewSealer(ring)
	now := time.Now()
	tok, err := hook.Seal(s, nil, &scone.SCONE{Service: service, Scope: scope, Version: 1, IssuedAt: now, Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestReplyHeadersRoundTrip(t *testing.T) {
	t.Parallel()
	in := hook.Reply{
		SCONEs:  [][]byte{sealed(t, "a", "/x/"), sealed(t, "b", "/x/")},
		Dropped: []hook.HolderKey{{Service: "c d", Scope: "/x y/"}},
	}
	h := http.Header{}
	setHeaders(h, &in)
	out, err := replyFromHeaders(h)
	if err != nil {
		t.Fatal(err)
	}
	if len(out.SCONEs) != 2 || len(out.Dropped) != 1 || out.Dropped[0] != in.Dropped[0] {
		t.Fatalf("round trip: %+v", out)
	}
	for _, bad := range []string{"nospace", " /x/", "%zz /"} {
		h := http.Header{HeaderDrop: {bad}}
		if _, err := replyFromHeaders(h); scone.CodeOf(err) != scone.CodeMalformed {
			t.Errorf("drop %q: %v", bad, err)
		}
	}
}

// TestRequestSCONEs: which cookies count, and which carrier the reply takes.
func TestRequestSCONEs(t *testing.T) {
	t.Parallel()
	a, b := scone.EncodeText(sealed(t, "a", "/")), scone.EncodeText(sealed(t, "b", "/"))
	for _, tc := range []struct {
		name     string
		header   []string // nil: no Scone header
		cookies  string
		prefix   string
		tokens   int
		counted  int
		byHeader bool
		code     scone.Code
	}{
		{name: "header", header: []string{a + " , " + b}, cookies: "session=not-ours", prefix: "scone-", tokens: 2, byHeader: true},
		{name: "cookies", cookies: "scone-a=" + a + "; scone-b=" + b + "; session=x", prefix: "scone-", tokens: 2, counted: 2},
		{name: "empty header and cookies", header: []string{""}, cookies: "scone-b=" + b, prefix: "scone-", tokens: 1, counted: 1},
		{name: "empty header and an emptied cookie", header: []string{" , "}, cookies: "scone-b=", prefix: "scone-", counted: 1},
		{name: "both carriers", header: []string{a}, cookies: "scone-b=" + b, prefix: "scone-", counted: 1, code: scone.CodeMalformed},
		{name: "header and an ignored cookie", header: []string{a}, cookies: "scone-b=" + b, prefix: "__Host-scone-", tokens: 1, byHeader: true},
		{name: "unprefixed ignored", cookies: "scone-a=" + a + "; __Host-scone-b=" + b, prefix: "__Host-scone-", tokens: 1, counted: 1},
		{name: "other prefix ignored", cookies: "__Secure-scone-a=" + a + "; __Host-scone-b=" + b, prefix: "__Host-scone-", tokens: 1, counted: 1},
		{name: "garbage cookie", cookies: "scone-b=garbage!; scone-b=" + b, prefix: "scone-", counted: 1, code: scone.CodeMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			if tc.header != nil {
				r.Header[HeaderSCONE] = tc.header
			}
			r.Header.Set("Cookie", tc.cookies)
			in, err := requestSCONEs(r, tc.prefix)
			if scone.CodeOf(err) != tc.code || len(in.cookies) != tc.counted {
				t.Fatalf("error %v (want code %v), cookies %v", err, tc.code, in.cookies)
			}
			if err == nil && (len(in.tokens) != tc.tokens || in.byHeader != tc.byHeader) {
				t.Fatalf("%d tokens, byHeader %v; want %d, %v", len(in.tokens), in.byHeader, tc.tokens, tc.byHeader)
			}
		})
	}
}

// TestCookiePolicy: Secure, and the strongest prefix its path allows,
// except over plain HTTP to a loopback host.
func TestCookiePolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url    string
		tls    bool
		header string // a forwarding header, if any
		force  *bool
		secure bool
		atRoot string // the cookie name of service "a" at path "/"
		atShop string // and at "/shop/"
	}{
		{url: "http://127.0.0.1:8080/", atRoot: "scone-a", atShop: "scone-a"},
		{url: "http://127.1.2.3/", atRoot: "scone-a", atShop: "scone-a"},
		{url: "http://[::1]:80/", atRoot: "scone-a", atShop: "scone-a"},
		{url: "http://localhost:8080/", atRoot: "scone-a", atShop: "scone-a"},
		{url: "http://app.localhost/", atRoot: "scone-a", atShop: "scone-a"},
		{url: "http://127.0.0.1/", tls: true, secure: true, atRoot: "__Host-scone-a", atShop: "__Secure-scone-a"},
		{url: "http://127.0.0.1/", header: "X-Forwarded-Proto", secure: true, atRoot: "__Host-scone-a", atShop: "__Secure-scone-a"},
		{url: "http://127.0.0.1/", header: "Forwarded", secure: true, atRoot: "__Host-scone-a", atShop: "__Secure-scone-a"},
		{url: "http://shop.example/", secure: true, atRoot: "__Host-scone-a", atShop: "__Secure-scone-a"},
		{url: "http://10.0.0.1:8080/", secure: true, atRoot: "__Host-scone-a", atShop: "__Secure-scone-a"},
		{url: "http://127.0.0.1/", force: new(true), secure: true, atRoot: "__Host-scone-a", atShop: "__Secure-scone-a"},
		{url: "http://shop.example/", force: new(false), atRoot: "scone-a", atShop: "scone-a"},
	} {
		r := httptest.NewRequest("GET", tc.url, nil)
		if tc.tls {
			r.TLS = &tls.ConnectionState{}
		}
		if tc.header != "" {
			r.Header.Set(tc.header, "https")
		}
		p := cookiePolicy{sameSite: http.SameSiteLaxMode, secure: tc.force}
		secure := p.secureFor(r)
		root, shop := p.cookie("a", "/", secure), p.cookie("a", "/shop/", secure)
		if secure != tc.secure || root.Secure != tc.secure || root.Name != tc.atRoot || shop.Name != tc.atShop {
			t.Errorf("%s (TLS %v, %q, forced %v): secure %v, %q, %q", tc.url, tc.tls, tc.header, tc.force, secure, root.Name, shop.Name)
		}
	}
}

// FuzzReplyHeaders: whatever a server puts in the Scone and Scone-Drop
// headers, the client parses it or fails with a code, and never panics.
func FuzzReplyHeaders(f *testing.F) {
	tok := sealed(f, "a", "/x/")
	f.Add(string(hook.AppendText(nil, tok)), "a /x/")
	f.Add("", "a%20b /")
	f.Add(",,", "x")
	f.Fuzz(func(t *testing.T, scones, drops string) {
		h := http.Header{HeaderSCONE: {scones}, HeaderDrop: {drops}}
		r, err := replyFromHeaders(h)
		if err != nil {
			if c := scone.CodeOf(err); c != scone.CodeMalformed && c != scone.CodeTooLarge {
				t.Fatalf("error with code %v: %v", c, err)
			}
			return
		}
		again := http.Header{}
		setHeaders(again, &r)
		r2, err := replyFromHeaders(again)
		if err != nil || len(r2.SCONEs) != len(r.SCONEs) || len(r2.Dropped) != len(r.Dropped) {
			t.Fatalf("re-encoded reply differs: %v", err)
		}
	})
}
