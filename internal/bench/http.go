package bench

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"time"

	"github.com/alexedwards/scs/v2"
	"github.com/alexedwards/scs/v2/memstore"
	"github.com/gorilla/securecookie"
	gsessions "github.com/gorilla/sessions"

	"github.com/scone-project/scone/internal/bench/benchpb"
	"github.com/scone-project/scone/sconehttp"
)

// The HTTP contenders run the same workload over net/http: a GET of
// /step?size=S per call, the session's state in (or named by) a cookie that
// the caller's cookie jar holds, one jar per session, and the step count in
// the reply's body.
const (
	HTTPPlain   = "http-plain"
	HTTPCookie  = "http-cookie"
	HTTPScone   = "http-scone"
	HTTPGorilla = "http-gorilla"
	HTTPSCS     = "http-scs"
)

// httpContenders returns the HTTP contenders, in the order they run.
func httpContenders() []Contender {
	return []Contender{
		{HTTPPlain, "plain net/http, no state (the HTTP ceiling)", false, startHTTP(httpPlain)},
		{HTTPCookie, "the state's bytes in a plain cookie, no crypto (the limit of carrying it)", true, startHTTP(httpCookie)},
		{HTTPScone, "sconehttp: the state sealed in a SCONE cookie", true, startHTTPScone},
		{HTTPGorilla, "gorilla/sessions CookieStore: the state in a cookie, gob, AES-256-CTR and HMAC-SHA256 (securecookie)", true, startHTTP(httpGorilla)},
		{HTTPSCS, "alexedwards/scs with its memory store: a token cookie, the state in the server", true, startHTTP(httpSCS)},
	}
}

// stateCookie is the cookie of the http-cookie contender.
const stateCookie = "state"

// writeCount replies with the session's step count.
func writeCount(w http.ResponseWriter, n uint64) {
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, strconv.FormatUint(n, 10))
}

// sizeOf reads the state size of a request, or replies 400.
func sizeOf(w http.ResponseWriter, r *http.Request) (int, bool) {
	size, err := strconv.Atoi(r.URL.Query().Get("size"))
	if err != nil || size < MinSize || size > MaxSize {
		http.Error(w, "bad size", http.StatusBadRequest)
		return 0, false
	}
	return size, true
}

func httpPlain(*running) (http.Handler, error) {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := sizeOf(w, r); ok {
			writeCount(w, 0)
		}
	}), nil
}

func httpCookie(*running) (http.Handler, error) {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size, ok := sizeOf(w, r)
		if !ok {
			return
		}
		var d []byte
		if c, err := r.Cookie(stateCookie); err == nil {
			d, _ = base64.RawURLEncoding.DecodeString(c.Value)
		}
		d, n := advance(d, size)
		http.SetCookie(w, &http.Cookie{Name: stateCookie, Value: base64.RawURLEncoding.EncodeToString(d), Path: "/", HttpOnly: true})
		writeCount(w, n)
	}), nil
}

func startHTTPScone(ctx context.Context) (*running, error) {
	sealer, err := newSealer()
	if err != nil {
		return nil, err
	}
	return startHTTP(func(*running) (http.Handler, error) {
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			size, ok := sizeOf(w, r)
			if !ok {
				return
			}
			n, err := sconeKeeper{}.step(r.Context(), "", size)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			writeCount(w, n)
		})
		// A cookie budget that takes the largest state a cookie jar holds.
		return sconehttp.Middleware(sealer, "bench", sconehttp.WithCookieBudget(64<<10))(h), nil
	})(ctx)
}

func httpGorilla(*running) (http.Handler, error) {
	store := gsessions.NewCookieStore(securecookie.GenerateRandomKey(32), securecookie.GenerateRandomKey(32))
	for _, c := range store.Codecs {
		if sc, ok := c.(*securecookie.SecureCookie); ok {
			sc.MaxLength(0) // no length limit: the cookie jar takes any size
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size, ok := sizeOf(w, r)
		if !ok {
			return
		}
		s, _ := store.Get(r, "bench") // a cookie that does not open starts a new session
		d, _ := s.Values["d"].([]byte)
		d, n := advance(d, size)
		s.Values["d"] = d
		if err := s.Save(r, w); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeCount(w, n)
	}), nil
}

func httpSCS(*running) (http.Handler, error) {
	// scs.New's defaults, but a memory store without its cleanup goroutine
	// (the sessions outlive the bench; scs.New's own store would start one
	// that cannot be stopped reliably).
	sm := &scs.SessionManager{
		Lifetime: 24 * time.Hour,
		Store:    memstore.NewWithCleanupInterval(0),
		Codec:    scs.GobCodec{},
		ErrorFunc: func(w http.ResponseWriter, _ *http.Request, err error) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		},
		Cookie: scs.SessionCookie{Name: "session", Path: "/", HttpOnly: true, Persist: true, SameSite: http.SameSiteLaxMode},
	}
	return sm.LoadAndSave(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size, ok := sizeOf(w, r)
		if !ok {
			return
		}
		d, _ := sm.Get(r.Context(), "d").([]byte)
		d, n := advance(d, size)
		sm.Put(r.Context(), "d", d)
		writeCount(w, n)
	})), nil
}

// jarKey is the context key of a session's HTTP client.
type jarKey struct{}

// startHTTP serves the handler newHandler makes on a loopback port; each
// session is an http.Client with a cookie jar of its own, on one transport.
func startHTTP(newHandler func(*running) (http.Handler, error)) func(context.Context) (*running, error) {
	return func(context.Context) (*running, error) {
		r := &running{}
		h, err := newHandler(r)
		if err != nil {
			return fail(r, err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(r, err)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(countedListener{lis, &r.serverWire})
		r.onClose(func() { srv.Close() })
		dial := countedDial(&r.callerWire)
		tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) }}
		r.onClose(tr.CloseIdleConnections)
		base := "http://" + lis.Addr().String() + "/step?size="
		r.session = func(ctx context.Context, _ string) context.Context {
			jar, _ := cookiejar.New(nil)
			return context.WithValue(ctx, jarKey{}, &http.Client{Transport: tr, Jar: jar})
		}
		r.step = func(ctx context.Context, _ int, req *benchpb.StepRequest) (*benchpb.StepReply, error) {
			c, ok := ctx.Value(jarKey{}).(*http.Client)
			if !ok {
				return nil, errors.New("no session client in the context")
			}
			hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, base+strconv.Itoa(int(req.GetSize())), nil)
			if err != nil {
				return nil, err
			}
			resp, err := c.Do(hreq)
			if err != nil {
				return nil, err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				return nil, err
			}
			if resp.StatusCode != http.StatusOK {
				return nil, fmt.Errorf("HTTP %s: %s", resp.Status, body)
			}
			n, err := strconv.ParseUint(string(body), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("reply %q: %w", body, err)
			}
			return &benchpb.StepReply{Count: n}, nil
		}
		return r, nil
	}
}
