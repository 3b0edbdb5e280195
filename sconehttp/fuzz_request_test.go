package sconehttp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/badinput"
	"github.com/scone-project/scone/internal/hook"
)

// addCorpusSeeds adds the HTTP cases of the bad-input corpus (those up to
// 4 KiB) as (Scone header, Cookie header) seeds.
func addCorpusSeeds(f *testing.F) {
	c, err := badinput.Load("../testdata/badinput")
	if err != nil {
		f.Fatal(err)
	}
	for _, cs := range c.Select(false) {
		for _, p := range cs.Payloads {
			if len(p) > 4<<10 {
				continue
			}
			switch cs.Carrier {
			case badinput.Envelope:
				f.Add(scone.EncodeText(p), "")
			case badinput.Header:
				f.Add(string(p), "")
			case badinput.Cookie:
				f.Add("", string(p))
			}
		}
	}
}

// FuzzRequestSCONEs: whatever a client puts in the Scone and Cookie
// headers, the server reads SCONEs from it or fails with a code, never
// more than 64 of them, and what it reads sent again reads the same.
func FuzzRequestSCONEs(f *testing.F) {
	addCorpusSeeds(f)
	f.Add(string(hook.AppendText(nil, sealed(f, "a", "/x/"))), "scone-a=")
	f.Add(" , ,", "scone-b=AQ; other=1")
	f.Fuzz(func(t *testing.T, header, cookie string) {
		r := &http.Request{Header: http.Header{HeaderSCONE: {header}, "Cookie": {cookie}}}
		in, err := requestSCONEs(r, CookiePrefix)
		if err != nil {
			if c := scone.CodeOf(err); c != scone.CodeMalformed && c != scone.CodeTooLarge {
				t.Fatalf("error with code %v: %v", c, err)
			}
			return
		}
		if in.byHeader != (len(in.cookies) == 0) || len(in.tokens) > maxSCONEs {
			t.Fatalf("byHeader %v with %d SCONE cookies, %d SCONEs", in.byHeader, len(in.cookies), len(in.tokens))
		}
		texts := make([]string, len(in.tokens))
		for i, tok := range in.tokens {
			texts[i] = scone.EncodeText(tok)
		}
		again := &http.Request{Header: http.Header{HeaderSCONE: {strings.Join(texts, ",")}}}
		in2, err := requestSCONEs(again, CookiePrefix)
		if err != nil || len(in2.tokens) != len(in.tokens) {
			t.Fatalf("the SCONEs read, sent again: %d, %v; were %d", len(in2.tokens), err, len(in.tokens))
		}
	})
}

// FuzzMiddleware: a request with any Scone, Cookie and Scone-Scope headers
// gets either the handler's reply or the status of a SCONE code, never a
// panic or an internal error.
func FuzzMiddleware(f *testing.F) {
	addCorpusSeeds(f)
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		f.Fatal(err)
	}
	s, err := scone.NewSealer(ring)
	if err != nil {
		f.Fatal(err)
	}
	h := Middleware(s, "a")(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, _ := scone.FromContext(r.Context())
		st.SetData(append(st.Data(), 'x'))
		w.Write(st.Data())
	}))
	f.Fuzz(func(t *testing.T, header, cookie string) {
		r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1/", nil) // loopback: the corpus's unprefixed cookies count
		r.Header.Set(HeaderSCONE, header)
		r.Header.Set("Cookie", cookie)
		r.Header.Set(HeaderScope, cookie)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code == http.StatusOK {
			return
		}
		c := ResponseCode(w.Result())
		if c == scone.CodeUnknown || c == scone.CodeInternal || HTTPStatus(c) != w.Code {
			t.Fatalf("status %d with code %v: %s", w.Code, c, w.Body)
		}
	})
}
