package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/internal/httpident"
	"github.com/scone-project/scone/sconehttp"
)

// HTTPServer is a relay for HTTP: a reverse proxy in front of servers
// running sconehttp.Middleware, holding the SCONEs of the clients it names
// in its Store, as Server does for gRPC. The client needs no SCONE code: a
// browser or curl without cookies, a service without a sconehttp.Transport.
//
// For a request from a named client (Config.Identity, which sees the
// request as a gRPC call: its headers as incoming metadata with lower-cased
// keys, its verified TLS client certificate as the peer's), the relay takes
// the client's turn (one request at a time per client and first path
// segment, "/shop/" for "/shop/cart"), attaches the SCONEs it holds whose
// scope matches the request's path in the Scone header (so the Middleware
// answers in headers), and forwards the request. It takes the SCONEs off
// the response's headers and stores them, and only once the Store has
// acknowledged them does the response go out, without them. A response the
// store refuses (another request of the client changed the state first:
// CodeConflict) fails with the status of its code (sconehttp.HTTPStatus),
// and nothing of it is kept.
//
// A request that names no client, or that carries SCONEs of its own (a
// Scone header, SCONE cookies), passes through: its client holds its
// SCONEs. Config.IdentityHeader is removed from every request forwarded.
//
// A request an upstream loses before answering is re-sent with the same
// SCONEs to another upstream, up to Config.RetryAttempts in all: any
// request whose connection could not be made (nothing reached the
// upstream), and those of the methods HTTP defines as idempotent (GET,
// HEAD, OPTIONS, TRACE, PUT, DELETE) whatever failed. A request body is
// replayed only if it is at most 1 MiB, with its length given.
// Config.RetryMethods names gRPC methods and does not apply here.
type HTTPServer struct {
	cfg     Config
	scheme  string // of the upstreams: http, or https with Config.UpstreamTLS
	base    *http.Transport
	scones  *sconehttp.Transport // base, with the Scone header carrier
	proxy   *httputil.ReverseProxy
	srv     *http.Server
	turns   hook.Turns[turnKey]
	next    atomic.Uint64  // round-robin
	downTil []atomic.Int64 // per upstream: not tried first before this (unix ns)
	reg     *prometheus.Registry
	m       *metrics
}

// NewHTTP returns an HTTP relay for cfg, with the same defaults and
// identity rules as New. Serve it with Serve, or mount it (it is an
// http.Handler) in a server of your own.
func NewHTTP(cfg Config) (*HTTPServer, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &HTTPServer{cfg: cfg, scheme: "http", reg: prometheus.NewRegistry(), downTil: make([]atomic.Int64, len(cfg.Upstreams))}
	s.m = newMetrics(s.reg, cfg.Store)
	s.base = http.DefaultTransport.(*http.Transport).Clone()
	s.base.MaxIdleConnsPerHost = 256
	s.base.Proxy = nil
	if cfg.UpstreamTLS != nil {
		s.scheme = "https"
		s.base.TLSClientConfig = cfg.UpstreamTLS.Clone()
	}
	dial := s.base.DialContext
	if cfg.Dial != nil {
		dial = func(ctx context.Context, _, addr string) (net.Conn, error) { return cfg.Dial(ctx, addr) }
	}
	s.base.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, &dialError{err}
		}
		return c, nil
	}
	// The relay takes turns itself, per client; the Transport's holder is
	// each request's recorder (see httpCall).
	s.scones = sconehttp.NewTransport(s.base, sconehttp.WithConcurrentCalls(),
		sconehttp.WithHolderFromContext(func(ctx context.Context) scone.Holder {
			return callOf(ctx).rec
		}))
	s.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = s.scheme
			pr.Out.Host = pr.In.Host // the upstream's origin checks see the client's
			pr.SetXForwarded()
		},
		Transport:    roundTripper(s.roundTrip),
		ErrorHandler: s.proxyError,
		ErrorLog:     slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn)}
	if cfg.TLS != nil {
		s.srv.TLSConfig = cfg.TLS.Clone()
	}
	return s, nil
}

// Serve serves HTTP on lis (HTTPS with Config.TLS) until Stop.
func (s *HTTPServer) Serve(lis net.Listener) error {
	var err error
	if s.cfg.TLS != nil {
		err = s.srv.ServeTLS(lis, "", "")
	} else {
		err = s.srv.Serve(lis)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Stop stops at once: open requests fail. The store is not closed.
func (s *HTTPServer) Stop() {
	s.srv.Close()
	s.base.CloseIdleConnections()
}

// GracefulStop waits for open requests to end, then stops.
func (s *HTTPServer) GracefulStop() {
	s.srv.Shutdown(context.Background())
	s.base.CloseIdleConnections()
}

// Metrics returns the registry of the relay's Prometheus metrics: those of
// Server, requests labelled by HTTP status.
func (s *HTTPServer) Metrics() *prometheus.Registry { return s.reg }

// httpCall is what the relay knows of a request it forwards.
type httpCall struct {
	hold bool // the relay holds the client's SCONEs
	rec  *recorder
	body []byte // the request's body, kept to re-send it; nil: none, or not kept
	idem bool   // the method is idempotent: re-sent whatever failed
}

type callKey struct{}

func callOf(ctx context.Context) *httpCall {
	c, _ := ctx.Value(callKey{}).(*httpCall)
	return c
}

// maxReplayBody is the largest request body the relay keeps to re-send.
const maxReplayBody = 1 << 20

// ServeHTTP relays one request.
func (s *HTTPServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w}
	s.serve(sw, r)
	if sw.code == 0 {
		sw.code = http.StatusOK
	}
	s.m.requests.WithLabelValues(strconv.Itoa(sw.code)).Inc()
}

func (s *HTTPServer) serve(w http.ResponseWriter, r *http.Request) {
	client, err := s.cfg.Identity(httpident.Context(r))
	if err != nil {
		s.refuse(w, err)
		return
	}
	r = r.Clone(r.Context())
	if s.cfg.IdentityHeader != "" {
		r.Header.Del(s.cfg.IdentityHeader) // the relay vouches for nobody upstream
	}
	call := &httpCall{idem: idempotent(r.Method)}
	call.hold = client != "" && !carriesSCONEs(r)
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength > 0 && r.ContentLength <= maxReplayBody {
		b, err := io.ReadAll(io.LimitReader(r.Body, r.ContentLength))
		if err != nil {
			http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
			return
		}
		call.body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	if call.hold {
		// One request of a client at a time per service, through this
		// relay: two requests from the same SCONEs would each seal a
		// successor.
		release, err := s.turns.Take(r.Context(), turnKey{client, firstSegment(r.URL.Path)})
		if err != nil {
			s.refuse(w, scone.WrapError(scone.CodeUnavailable, "waiting for the client's turn", err))
			return
		}
		defer release()
		t := time.Now()
		sent, err := s.cfg.Store.Get(r.Context(), client, r.URL.Path)
		s.m.storeTime.WithLabelValues("get").Observe(time.Since(t).Seconds())
		if err != nil {
			s.refuse(w, err)
			return
		}
		s.m.attached.Add(float64(len(sent)))
		if len(sent) > 0 {
			s.m.lookups.WithLabelValues("hit").Inc()
		} else {
			s.m.lookups.WithLabelValues("miss").Inc()
		}
		s.m.carried.WithLabelValues("header").Inc()
		call.rec = &recorder{client: client, sent: sent}
		r.Header.Del(sconehttp.HeaderScope) // the scope is the server's to choose
	}
	s.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callKey{}, call)))
}

// roundTrip sends a request upstream, re-sending it to the next upstream
// when one loses it before answering, and keeps the SCONEs of the response
// before handing it to the proxy.
func (s *HTTPServer) roundTrip(out *http.Request) (*http.Response, error) {
	ctx := out.Context()
	call := callOf(ctx)
	rt := http.RoundTripper(s.base)
	if call.hold {
		rt = s.scones
	}
	var resp *http.Response
	var err error
	tried := make([]bool, len(s.cfg.Upstreams))
	for attempt := 1; ; attempt++ {
		i := s.pick(tried)
		req := out
		if attempt > 1 {
			req = out.Clone(ctx)
			if call.body != nil {
				req.Body = io.NopCloser(bytes.NewReader(call.body))
			}
		}
		if call.body != nil {
			// With GetBody, net/http itself re-sends the request on a new
			// connection when the pooled one it picked turns out closed
			// before a byte of the request was written (an upstream that
			// went away since the last request): nothing reached it.
			b := call.body
			req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
		}
		req.URL.Host = s.cfg.Upstreams[i]
		if call.hold {
			call.rec.reply = hook.Reply{}
		}
		resp, err = rt.RoundTrip(req)
		if err == nil {
			if attempt > 1 {
				s.m.retries.WithLabelValues("answered").Inc()
			}
			break
		}
		var de *dialError
		notSent := errors.As(err, &de)
		if notSent {
			s.downTil[i].Store(time.Now().Add(time.Second).UnixNano())
		}
		replayable := out.Body == nil || out.Body == http.NoBody || call.body != nil
		if attempt >= s.cfg.RetryAttempts || ctx.Err() != nil || scone.CodeOf(err) != scone.CodeUnknown ||
			!replayable || !notSent && !call.idem {
			if attempt > 1 {
				s.m.retries.WithLabelValues("failed").Add(float64(attempt - 1))
			}
			return nil, err
		}
		if allTried(tried) {
			// Every upstream failed once: wait before going round again.
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(rand.N(s.cfg.RetryBackoff << min(attempt-1, 10))):
			}
			clear(tried)
		}
	}
	if !call.hold {
		if resp.Header.Get(sconehttp.HeaderSCONE) != "" || len(resp.Header.Values("Set-Cookie")) > 0 {
			s.m.passthrough.Inc()
		}
		return resp, nil
	}
	resp.Header.Del(sconehttp.HeaderSCONE)
	resp.Header.Del(sconehttp.HeaderDrop)
	if err := s.keep(ctx, call.rec); err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}

// keep stores the SCONEs a response brought.
func (s *HTTPServer) keep(ctx context.Context, rec *recorder) error {
	r := &rec.reply
	for _, tok := range r.SCONEs {
		if err := checkSCONE(tok, s.cfg.MaxSize); err != nil {
			return upstreamFault(err)
		}
	}
	if r.Empty() {
		return nil
	}
	t := time.Now()
	err := s.cfg.Store.Apply(ctx, rec.client, r, rec.sent)
	s.m.storeTime.WithLabelValues("apply").Observe(time.Since(t).Seconds())
	if err != nil {
		return err
	}
	s.m.stored.Add(float64(len(r.SCONEs)))
	s.m.dropped.Add(float64(len(r.Dropped)))
	return nil
}

// pick returns the next upstream to try, round-robin, skipping those tried
// for this request and, if it can, those that lately refused a connection.
func (s *HTTPServer) pick(tried []bool) int {
	n := len(s.cfg.Upstreams)
	start := int(s.next.Add(1) % uint64(n))
	now := time.Now().UnixNano()
	pick := -1
	for j := range n {
		i := (start + j) % n
		if tried[i] {
			continue
		}
		if pick < 0 {
			pick = i
		}
		if s.downTil[i].Load() <= now {
			pick = i
			break
		}
	}
	tried[pick] = true
	return pick
}

func allTried(tried []bool) bool { return !slices.Contains(tried, false) }

// proxyError answers a request the relay could not relay.
func (s *HTTPServer) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case scone.CodeOf(err) != scone.CodeUnknown:
		s.refuse(w, err)
	case r.Context().Err() != nil:
		w.WriteHeader(http.StatusGatewayTimeout) // the client is gone, or out of time
	default:
		s.cfg.Logger.Warn("relay: no upstream answered", "err", err)
		http.Error(w, "relay: no upstream answered", http.StatusBadGateway)
	}
}

// refuse answers with a relay's own error.
func (s *HTTPServer) refuse(w http.ResponseWriter, err error) {
	c := scone.CodeOf(err)
	s.m.refused.WithLabelValues(c.String()).Inc()
	s.cfg.Logger.Warn("relay refused a request", "code", c.String(), "err", err)
	if c == scone.CodeUnknown {
		err = scone.WrapError(scone.CodeUnavailable, "relay: "+err.Error(), err)
	}
	sconehttp.WriteError(w, err)
}

// recorder is the holder a request's sconehttp.Transport works with: it
// gives the SCONEs the relay attached, and records the response's, which
// the relay then stores all at once (Store.Apply).
type recorder struct {
	client string
	sent   [][]byte
	reply  hook.Reply
}

func (r *recorder) Match(dst [][]byte, _ string) [][]byte { return append(dst, r.sent...) }

func (r *recorder) Put(tok []byte) (bool, error) {
	r.reply.SCONEs = append(r.reply.SCONEs, bytes.Clone(tok))
	return true, nil
}

func (r *recorder) Delete(service, scope string) {
	r.reply.Dropped = append(r.reply.Dropped, hook.HolderKey{Service: service, Scope: scope})
}

// carriesSCONEs reports whether a request brings SCONEs of its own: a Scone
// header (a sconehttp.Transport, even with none yet) or a SCONE cookie.
func carriesSCONEs(r *http.Request) bool {
	if _, ok := r.Header[sconehttp.HeaderSCONE]; ok {
		return true
	}
	for _, c := range r.Cookies() {
		name := strings.TrimPrefix(strings.TrimPrefix(c.Name, "__Host-"), "__Secure-")
		if strings.HasPrefix(name, sconehttp.CookiePrefix) {
			return true
		}
	}
	return false
}

// firstSegment returns the first segment of a path, the group a client's
// requests take turns in: "/shop/" for "/shop/cart", "/" for "/cart".
func firstSegment(path string) string {
	if i := strings.IndexByte(strings.TrimPrefix(path, "/"), '/'); i >= 0 {
		return path[:i+2]
	}
	return "/"
}

// idempotent reports whether HTTP defines method as idempotent (RFC 9110
// §9.2.2).
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// dialError is an upstream connection that could not be made: nothing of
// the request reached the upstream.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
