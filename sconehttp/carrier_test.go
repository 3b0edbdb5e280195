package sconehttp

import (
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

func TestRequestSCONEs(t *testing.T) {
	t.Parallel()
	a, b := sealed(t, "a", "/"), sealed(t, "b", "/")
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set(HeaderSCONE, string(hook.AppendText(nil, a))+" , ")
	r.AddCookie(&http.Cookie{Name: "scone-b", Value: string(hook.AppendText(nil, b))})
	r.AddCookie(&http.Cookie{Name: "session", Value: "not ours"})
	toks, byHeader, err := requestSCONEs(r)
	if err != nil || !byHeader || len(toks) != 2 {
		t.Fatalf("%d tokens, byHeader %v, %v", len(toks), byHeader, err)
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: "scone-b", Value: "garbage!"})
	if _, _, err := requestSCONEs(r); scone.CodeOf(err) != scone.CodeMalformed {
		t.Fatalf("garbage cookie: %v", err)
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
