package sconehttp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/sconehttp"
)

// counter is the state of the test service: how many visits.
type counter struct {
	Visits int    `json:"visits"`
	Note   string `json:"note,omitempty"`
}

var counterState = scone.NewTyped(scone.JSONCodec[counter]())

// visit counts a visit and answers with the count.
func visit(w http.ResponseWriter, r *http.Request) {
	c, _, err := counterState.Load(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	c.Visits++
	if n := r.URL.Query().Get("note"); n != "" {
		c.Note = strings.Repeat("x", atoi(n))
	}
	if err := counterState.Store(r.Context(), c); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if r.URL.Query().Get("fail") != "" {
		http.Error(w, "failing on purpose", http.StatusConflict)
		return
	}
	fmt.Fprintf(w, "%d", c.Visits)
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newSealer(t testing.TB, opts ...scone.Option) *scone.Sealer {
	t.Helper()
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scone.NewSealer(ring, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// shopServer serves visit under /shop/ with the middleware, and /other/
// without it.
func shopServer(t testing.TB, s *scone.Sealer, opts ...sconehttp.Option) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	opts = append([]sconehttp.Option{sconehttp.WithScope(sconehttp.StaticScope("/shop/"))}, opts...)
	mux.Handle("/shop/", sconehttp.Middleware(s, "counter", opts...)(http.HandlerFunc(visit)))
	mux.Handle("/other/", sconehttp.Middleware(s, "counter")(http.HandlerFunc(visit)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t testing.TB, c *http.Client, url string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func jarClient(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar}
}

// TestCookieSession: a plain client with a cookie jar, no SCONE code, keeps
// a session across calls and across a server restart.
func TestCookieSession(t *testing.T) {
	t.Parallel()
	s := newSealer(t)
	srv := shopServer(t, s)
	c := jarClient(t)
	for want := 1; want <= 3; want++ {
		resp, body := get(t, c, srv.URL+"/shop/visit")
		if body != strconv.Itoa(want) {
			t.Fatalf("visit %d: %q (%s)", want, body, resp.Status)
		}
	}
	resp, _ := get(t, c, srv.URL+"/shop/visit")
	sc := resp.Header.Get("Set-Cookie")
	for _, attr := range []string{"scone-counter=", "Path=/shop/", "Max-Age=86400", "HttpOnly", "SameSite=Lax"} {
		if !strings.Contains(sc, attr) {
			t.Errorf("Set-Cookie %q lacks %q", sc, attr)
		}
	}
	// A new server process with the same key: the session goes on.
	srv.Close()
	srv2 := shopServer(t, s)
	if _, body := get(t, c, srv2.URL+"/shop/visit"); body != "5" {
		t.Fatalf("after the restart: %q", body)
	}
}

// TestCookieScope: the cookie goes only where its path says.
func TestCookieScope(t *testing.T) {
	t.Parallel()
	srv := shopServer(t, newSealer(t))
	c := jarClient(t)
	get(t, c, srv.URL+"/shop/visit")
	get(t, c, srv.URL+"/shop/visit")
	if _, body := get(t, c, srv.URL+"/other/visit"); body != "1" {
		t.Fatalf("/other/ saw the /shop/ session: %q", body)
	}
	if _, body := get(t, c, srv.URL+"/shop/again"); body != "3" {
		t.Fatalf("/shop/ lost its session: %q", body)
	}
}

// TestMaxAgeRoundsUp: however long after the seal the reply's cookies are
// written (here every reading of the clock moves it on by 7 ms, as on a
// loaded machine), Max-Age is rounded up, so the cookie never ends before
// its SCONE does.
func TestMaxAgeRoundsUp(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Now()}
	tick := func() time.Time { clk.Advance(7 * time.Millisecond); return clk.Now() }
	srv := shopServer(t, newSealer(t, scone.WithClock(tick), scone.WithTTL(time.Minute)))
	resp, _ := get(t, jarClient(t), srv.URL+"/shop/visit")
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "Max-Age=60;") {
		t.Fatalf("Set-Cookie %q: want Max-Age=60", sc)
	}
}

// TestExpiry: the cookie's Max-Age is the SCONE's lifetime, and a SCONE
// sent after its expiry is refused (401, expired), not silently reset.
func TestExpiry(t *testing.T) {
	t.Parallel()
	clk := &clock{now: time.Now()}
	s := newSealer(t, scone.WithClock(clk.Now), scone.WithTTL(time.Minute))
	srv := shopServer(t, s)
	c := jarClient(t)
	resp, _ := get(t, c, srv.URL+"/shop/visit")
	if !strings.Contains(resp.Header.Get("Set-Cookie"), "Max-Age=60") {
		t.Fatalf("Set-Cookie %q", resp.Header.Get("Set-Cookie"))
	}
	clk.Advance(time.Minute) // the server's clock; the jar still sends it
	resp, _ = get(t, c, srv.URL+"/shop/visit")
	if resp.StatusCode != http.StatusUnauthorized || sconehttp.ResponseCode(resp) != scone.CodeExpired {
		t.Fatalf("expired SCONE: %s, code %v", resp.Status, sconehttp.ResponseCode(resp))
	}
	// A holder with the same clock evicts it instead: a new session starts.
	d := scone.NewDict(scone.WithDictClock(clk.Now))
	tc := &http.Client{Transport: sconehttp.NewTransport(nil, sconehttp.WithHolder(d))}
	get(t, tc, srv.URL+"/shop/visit")
	clk.Advance(time.Minute)
	if _, body := get(t, tc, srv.URL+"/shop/visit"); body != "1" {
		t.Fatalf("after expiry in the holder: %q", body)
	}
}

// TestTamperedCookie: a changed cookie gets 401 with a problem document
// naming the code, and no empty session is started over it: the handler
// does not run.
func TestTamperedCookie(t *testing.T) {
	t.Parallel()
	srv := shopServer(t, newSealer(t))
	c := jarClient(t)
	resp, _ := get(t, c, srv.URL+"/shop/visit")
	u := resp.Request.URL
	cookies := c.Jar.Cookies(u)
	if len(cookies) != 1 {
		t.Fatalf("jar holds %d cookies", len(cookies))
	}
	tok, err := scone.DecodeText(cookies[0].Value)
	if err != nil {
		t.Fatal(err)
	}
	tok[len(tok)-20] ^= 1 // a bit of the sealed part
	req, _ := http.NewRequest("GET", srv.URL+"/shop/visit", nil)
	req.AddCookie(&http.Cookie{Name: cookies[0].Name, Value: scone.EncodeText(tok)})
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct {
		Code   string `json:"code"`
		Status int    `json:"status"`
	}
	json.NewDecoder(resp.Body).Decode(&p)
	if resp.StatusCode != http.StatusUnauthorized || p.Code != "tampered" || p.Status != 401 ||
		resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("tampered cookie: %s %+v %q", resp.Status, p, resp.Header.Get("Content-Type"))
	}
	// The error empties the cookie it was sent (see TestBadCookieOneErrorThenFreshSession).
	if sc := resp.Header.Values("Set-Cookie"); len(sc) != 1 || !strings.HasPrefix(sc[0], cookies[0].Name+"=; Path=/shop/; Max-Age=1;") {
		t.Fatalf("Set-Cookie %q with the refusal, want the cookie emptied", sc)
	}
	// The jar's own cookie, not sent with the refused request, still works.
	if _, body := get(t, c, srv.URL+"/shop/visit"); body != "2" {
		t.Fatalf("the holder's session after the refusal: %q", body)
	}
}

// TestCookieBudget: a SCONE that does not fit a cookie fails with 413 and
// changes nothing; with compression the same state fits.
func TestCookieBudget(t *testing.T) {
	t.Parallel()
	for _, compress := range []bool{false, true} {
		var opts []scone.Option
		if compress {
			opts = append(opts, scone.WithCompression(256))
		}
		srv := shopServer(t, newSealer(t, opts...))
		c := jarClient(t)
		get(t, c, srv.URL+"/shop/visit")
		resp, body := get(t, c, srv.URL+"/shop/visit?note=5000")
		if compress {
			if resp.StatusCode != http.StatusOK || body != "2" {
				t.Fatalf("compressed: %s %q", resp.Status, body)
			}
			continue
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge || sconehttp.ResponseCode(resp) != scone.CodeTooLarge {
			t.Fatalf("over the cookie budget: %s %v", resp.Status, sconehttp.ResponseCode(resp))
		}
		if resp.Header.Get("Set-Cookie") != "" {
			t.Fatal("a cookie was set with the refusal")
		}
		if _, body := get(t, c, srv.URL+"/shop/visit"); body != "2" {
			t.Fatalf("after the refusal the session is at %q, want 2", body)
		}
	}
}

// TestFailedResponseKeepsState: a response of 400 or more carries no new
// SCONE.
func TestFailedResponseKeepsState(t *testing.T) {
	t.Parallel()
	srv := shopServer(t, newSealer(t))
	c := jarClient(t)
	get(t, c, srv.URL+"/shop/visit")
	resp, _ := get(t, c, srv.URL+"/shop/visit?fail=1")
	if resp.StatusCode != http.StatusConflict || resp.Header.Get("Set-Cookie") != "" {
		t.Fatalf("failed response: %s, Set-Cookie %q", resp.Status, resp.Header.Get("Set-Cookie"))
	}
	if _, body := get(t, c, srv.URL+"/shop/visit"); body != "2" {
		t.Fatalf("after a failure: %q", body)
	}
}

// TestHeaderCarrier: the Transport carries SCONEs in headers; the server
// answers in kind and sets no cookie.
func TestHeaderCarrier(t *testing.T) {
	t.Parallel()
	srv := shopServer(t, newSealer(t))
	tr := sconehttp.NewTransport(nil)
	c := &http.Client{Transport: tr}
	for want := 1; want <= 3; want++ {
		resp, body := get(t, c, srv.URL+"/shop/visit?note=6000") // over the cookie budget: fine in a header
		if body != strconv.Itoa(want) || resp.Header.Get("Set-Cookie") != "" {
			t.Fatalf("visit %d: %s %q, Set-Cookie %q", want, resp.Status, body, resp.Header.Get("Set-Cookie"))
		}
	}
	host := strings.TrimPrefix(srv.URL, "http://")
	if n, _ := tr.Holder(host).(*scone.Dict).Len(); n != 1 {
		t.Fatalf("the transport holds %d SCONEs", n)
	}
}

// TestMultiTierHTTP: a front end calls a back end over HTTP with the
// request's context; the back end's SCONE travels up to the browser's
// cookie jar, scoped to the front end, and down again.
func TestMultiTierHTTP(t *testing.T) {
	t.Parallel()
	s := newSealer(t)
	back := httptest.NewServer(sconehttp.Middleware(s, "back")(http.HandlerFunc(visit)))
	defer back.Close()
	backend := &http.Client{Transport: sconehttp.NewTransport(nil)}
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequestWithContext(r.Context(), "GET", back.URL+"/visit", nil)
		resp, err := backend.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(w, "back end says %s", b)
	})
	mux := http.NewServeMux()
	mux.Handle("/front/", sconehttp.Middleware(s, "front", sconehttp.WithScope(sconehttp.StaticScope("/front/")))(front))
	fs := httptest.NewServer(mux)
	defer fs.Close()
	c := jarClient(t)
	for want := 1; want <= 3; want++ {
		if _, body := get(t, c, fs.URL+"/front/x"); body != fmt.Sprintf("back end says %d", want) {
			t.Fatalf("call %d: %q", want, body)
		}
	}
	names := map[string]string{}
	for _, ck := range c.Jar.Cookies(mustURL(fs.URL + "/front/x")) {
		names[ck.Name] = ck.Value
	}
	if _, ok := names["scone-back"]; !ok {
		t.Fatalf("the browser does not hold the back end's SCONE: %v", names)
	}
	// A front end's back-end transport keeps nothing of its own.
	if n, _ := backend.Transport.(*sconehttp.Transport).Holder(strings.TrimPrefix(back.URL, "http://")).(*scone.Dict).Len(); n != 0 {
		t.Fatalf("the front end kept %d back-end SCONEs", n)
	}
}

// TestConcurrentRequestsTakeTurns: a Transport's concurrent requests to one
// host never lose an update.
func TestConcurrentRequestsTakeTurns(t *testing.T) {
	t.Parallel()
	srv := shopServer(t, newSealer(t))
	c := &http.Client{Transport: sconehttp.NewTransport(nil)}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { get(t, c, srv.URL+"/shop/visit") })
	}
	wg.Wait()
	if _, body := get(t, c, srv.URL+"/shop/visit"); body != "21" {
		t.Fatalf("after 20 concurrent visits: %q", body)
	}
}

// TestLateChangePanics: a handler that streams past the buffer gets its
// state sealed then; a later change is a loud failure, never a silent loss.
func TestLateChangePanics(t *testing.T) {
	t.Parallel()
	s := newSealer(t)
	panicked := make(chan any, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { panicked <- recover() }()
		st, _ := scone.FromContext(r.Context())
		st.SetData([]byte("before the body"))
		w.Write(bytes.Repeat([]byte("x"), 200))
		st.SetData([]byte("after the headers"))
	})
	srv := httptest.NewServer(sconehttp.Middleware(s, "stream", sconehttp.WithBufferLimit(100))(h))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err == nil {
		resp.Body.Close()
	}
	if p := <-panicked; p == nil || scone.CodeOf(p.(error)) != scone.CodeInternal {
		t.Fatalf("a change after the seal: recovered %v", p)
	}
}

func TestStatusMapping(t *testing.T) {
	t.Parallel()
	for _, c := range hook.Codes() {
		rec := httptest.NewRecorder()
		sconehttp.WriteError(rec, scone.NewError(c, "x"))
		if rec.Code != sconehttp.HTTPStatus(c) || rec.Code < 400 {
			t.Errorf("%v → %d", c, rec.Code)
		}
		if got := sconehttp.ResponseCode(rec.Result()); got != c {
			t.Errorf("ResponseCode(response of %v) = %v", c, got)
		}
	}
	rec := httptest.NewRecorder()
	sconehttp.WriteError(rec, context.Canceled)
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "canceled") {
		t.Errorf("a foreign error: %d %q", rec.Code, rec.Body.String())
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// TestFlushAndLargeWrites: a handler that flushes before writing (as a
// server-sent events handler does) and one whose single write is over the
// buffer limit both get their state sealed and their body whole.
func TestFlushAndLargeWrites(t *testing.T) {
	t.Parallel()
	s := newSealer(t)
	big := bytes.Repeat([]byte("b"), 1000)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, _ := scone.FromContext(r.Context())
		st.SetData([]byte("sealed before the body"))
		if r.URL.Path == "/flush" {
			w.Header().Set("Content-Type", "text/event-stream")
			w.(http.Flusher).Flush()
			fmt.Fprint(w, "data: hello\n\n")
			return
		}
		w.Write(big)
	})
	srv := httptest.NewServer(sconehttp.Middleware(s, "stream", sconehttp.WithBufferLimit(100))(h))
	defer srv.Close()
	for path, want := range map[string]string{"/flush": "data: hello\n\n", "/big": string(big)} {
		resp, body := get(t, http.DefaultClient, srv.URL+path)
		if resp.StatusCode != 200 || body != want || !strings.Contains(resp.Header.Get("Set-Cookie"), "scone-stream=") {
			t.Errorf("%s: %s, %d bytes, Set-Cookie %q", path, resp.Status, len(body), resp.Header.Get("Set-Cookie"))
		}
	}
}
