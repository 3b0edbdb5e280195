package sconehttp

import (
	"bytes"
	"errors"
	"net"
	"net/http"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/internal/hookmetrics"
	"github.com/scone-project/scone/internal/hooktrace"
)

// Middleware returns middleware that serves every request of service with
// its SCONEs: it opens the request's SCONE of the service into the request
// context's scone.State (one that does not open gets WriteError's response,
// and the handler does not run), runs the handler, and seals what changed
// into the response: in cookies, or in headers when the request came with
// the Scone header and no SCONE cookie (a Transport). A response with a
// status of 400 or more, or a gRPC status other than OK in its headers
// (see the package doc on Connect), carries no new SCONE, so the holder
// keeps what it had, unless the handler called State.ApplyOnError.
//
// Unsafe requests (POST, PUT, DELETE...) from another origin are refused
// with 403 before anything else, by net/http's CrossOriginProtection (see
// WithTrustedOrigins, WithCrossOriginProtection and
// WithoutCrossOriginProtection).
//
// The state is sealed before the response's headers go out, so the
// Middleware holds the body back until the handler returns, or until it
// writes more than the buffer limit or flushes (see WithBufferLimit).
//
// It panics if the metrics of WithMetrics cannot be registered, or an
// origin of WithTrustedOrigins is not an origin.
func Middleware(s *scone.Sealer, service string, opts ...Option) func(http.Handler) http.Handler {
	m := &middleware{sealer: s, service: service, cfg: newConfig(opts)}
	m.trace = hooktrace.New(m.cfg.tracer)
	if m.cfg.metrics != nil {
		var err error
		if m.metrics, err = hookmetrics.New(m.cfg.metrics, hookmetrics.HTTP); err != nil {
			panic("sconehttp: " + err.Error())
		}
	}
	cop := m.cfg.crossOrigin
	if cop == nil && !m.cfg.anyOrigin {
		cop = http.NewCrossOriginProtection()
	}
	for _, o := range m.cfg.trustedOrigins {
		if cop == nil {
			break // WithoutCrossOriginProtection: every origin is let in
		}
		if err := cop.AddTrustedOrigin(o); err != nil {
			panic("sconehttp: " + err.Error())
		}
	}
	return func(next http.Handler) http.Handler {
		h := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(w, r, next) }))
		if cop != nil {
			h = cop.Handler(h)
		}
		return h
	}
}

type middleware struct {
	sealer  *scone.Sealer
	service string
	cfg     config
	metrics *hookmetrics.Metrics // nil without WithMetrics
	trace   *hooktrace.Tracer    // nil: the provider of each request's span
}

// fail counts a request the middleware failed, and writes its error.
func (m *middleware) fail(w http.ResponseWriter, err error) {
	m.metrics.Failed(m.service, err)
	WriteError(w, err)
}

// refuse fails a request whose SCONEs could not be opened. For a cookie
// holder, the error also empties the request's SCONE cookies (see
// clearsCookie): the client sees the error once, and its next request
// starts a new session rather than failing the same way until its user
// clears the cookies by hand. A header holder keeps what it had.
//
// A refusal of a spent version whose reply was lost carries the session's
// newest SCONE (hook.Recovery), in the carrier of the request, so the
// holder goes on with it.
func (m *middleware) refuse(w http.ResponseWriter, in *carried, secure bool, scope string, err error) {
	if !in.byHeader && err != errBothCarriers && clearsCookie(scone.CodeOf(err)) {
		for _, name := range in.cookies {
			w.Header().Add("Set-Cookie", m.cfg.cookies.emptied(name, cookiePath(scope), secure).String())
		}
	}
	if r := hook.Recovery(err); !r.Empty() {
		w.Header().Add("Cache-Control", `no-cache="Set-Cookie, Scone"`)
		if in.byHeader {
			setHeaders(w.Header(), &r)
		} else if cookies, cerr := m.cfg.cookies.replyCookies(&r, secure, hook.Now(m.sealer), nil, cookiePath(scope)); cerr == nil {
			for _, c := range cookies {
				w.Header().Add("Set-Cookie", c.String())
			}
		}
	}
	m.fail(w, err)
}

// clearsCookie reports whether an error of code c is about a SCONE the
// client sent (it does not open, or may no longer be used), so that a
// cookie holder's copy is emptied with the error. The codes of a server
// that cannot serve now (unavailable, exhausted, internal), or of new state
// that does not fit (too_large), keep the cookies; so does rolled_back,
// whose newer version may be in the same jar (a concurrent request's
// reply) or comes with the refusal.
func clearsCookie(c scone.Code) bool {
	switch c {
	case scone.CodeMalformed, scone.CodeTampered, scone.CodeExpired, scone.CodeUnknownKey,
		scone.CodeWrongService, scone.CodeWrongClient, scone.CodeRevoked,
		scone.CodeSessionExpired, scone.CodeBundle:
		return true
	}
	return false
}

// cookiePath returns the path of the cookies of a scope.
func cookiePath(scope string) string {
	if scope == "" {
		return "/"
	}
	return scope
}

func (m *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	scope := m.cfg.scope(r)
	secure := m.cfg.cookies.secureFor(r)
	in, err := requestSCONEs(r, namePrefix(secure, cookiePath(scope))+CookiePrefix)
	if err != nil {
		m.refuse(w, &in, secure, scope, err)
		return
	}
	nested := false
	if s := r.Header.Get(HeaderScope); in.byHeader && s != "" {
		if len(s) > maxScopeLen {
			m.fail(w, scone.NewError(scone.CodeMalformed, HeaderScope+" longer than 255 bytes"))
			return
		}
		scope, nested = s, true
	}
	span := m.trace.Start(r.Context(), hooktrace.Restore)
	x, err := m.metrics.Begin(r.Context(), m.sealer, hook.Incoming{
		SCONEs:         in.tokens,
		Expect:         scone.Expect{Service: m.service, Client: m.cfg.identity(r)},
		Scope:          scope,
		ResetOnFailure: m.cfg.resetOnError,
		Nested:         nested,
		Endpoint:       localAddr(r),
		Operation:      r.Method + " " + r.URL.Path,
	})
	span.Restored(m.service, in.tokens, x, false, err)
	if err != nil {
		m.refuse(w, &in, secure, scope, err)
		return
	}
	rw := &responseWriter{w: w, m: m, x: x, in: &in, secure: secure, scope: scope}
	next.ServeHTTP(rw, r.WithContext(x.Context()))
	rw.close()
}

// responseWriter holds the response back until the state is sealed.
type responseWriter struct {
	w      http.ResponseWriter
	m      *middleware
	x      *hook.Exchange
	in     *carried
	secure bool   // the request's cookies are Secure (cookiePolicy.secureFor)
	scope  string // the request's scope

	status int
	buf    bytes.Buffer
	sealed bool
	failed bool // sealing failed: the response is the error, the rest is dropped
}

var errSealFailed = errors.New("sconehttp: the response was replaced by the error of sealing its state")

func (rw *responseWriter) Header() http.Header { return rw.w.Header() }

func (rw *responseWriter) WriteHeader(code int) {
	switch {
	case code == http.StatusSwitchingProtocols && !rw.sealed:
		rw.status = code
		rw.seal() // the connection is the handler's from here on
	case rw.sealed:
		if !rw.failed {
			rw.w.WriteHeader(code) // net/http reports the superfluous call
		}
	case code >= 100 && code < 200:
		rw.w.WriteHeader(code) // informational: nothing is final yet
	case rw.status == 0:
		rw.status = code
	}
}

func (rw *responseWriter) Write(b []byte) (int, error) {
	if rw.sealed {
		if rw.failed {
			return 0, errSealFailed
		}
		return rw.w.Write(b)
	}
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	if rw.buf.Len()+len(b) > rw.m.cfg.bufferLimit {
		// Over the limit: seal now, and write through from here on.
		rw.seal()
		if rw.failed {
			return 0, errSealFailed
		}
		return rw.w.Write(b)
	}
	return rw.buf.Write(b)
}

// Flush seals the state and sends what the handler wrote so far.
func (rw *responseWriter) Flush() {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	rw.seal()
	if f, ok := rw.w.(http.Flusher); ok && !rw.failed {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (rw *responseWriter) Unwrap() http.ResponseWriter { return rw.w }

func (rw *responseWriter) close() {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	rw.seal()
}

// seal seals the state, puts the SCONEs on the response and sends the
// headers and what is buffered. If sealing fails, the response becomes the
// error instead, so the holder keeps its SCONEs.
func (rw *responseWriter) seal() {
	if rw.sealed {
		return
	}
	rw.sealed = true
	span := rw.m.trace.Start(rw.x.Context(), hooktrace.Commit)
	reply, err := rw.m.metrics.Finish(rw.x, nil, rw.callFailed())
	span.Committed(rw.m.service, &reply, err)
	hook.Freeze(rw.x.State())
	var cookies []*http.Cookie
	if err == nil && !rw.in.byHeader {
		cookies, err = rw.m.cfg.cookies.replyCookies(&reply, rw.secure, hook.Now(rw.m.sealer), rw.refused(), cookiePath(rw.scope))
	}
	if err != nil {
		rw.failed = true
		h := rw.w.Header()
		for k := range h {
			delete(h, k) // the handler's headers belonged to the response it no longer gets
		}
		rw.m.fail(rw.w, err)
		return
	}
	rw.m.metrics.Served(rw.x, false, &reply)
	h := rw.w.Header()
	if !reply.Empty() || len(cookies) > 0 {
		h.Add("Cache-Control", `no-cache="Set-Cookie, Scone"`)
	}
	if rw.in.byHeader {
		setHeaders(h, &reply)
	}
	for _, c := range cookies {
		h.Add("Set-Cookie", c.String())
	}
	rw.w.WriteHeader(rw.status)
	rw.w.Write(rw.buf.Bytes())
	rw.buf = bytes.Buffer{}
}

// callFailed reports whether the response so far is a failure: a status
// of 400 or more, or a gRPC status other than OK. The gRPC and gRPC-Web
// protocols (of a Connect handler, say) answer a failed call with 200 and
// its status in trailers, which a handler that has sent no message sets
// before the headers go out: as a header (gRPC-Web), or as a trailer
// declared with http.TrailerPrefix (gRPC).
func (rw *responseWriter) callFailed() bool {
	if rw.status >= 400 {
		return true
	}
	h := rw.w.Header()
	for _, v := range [][]string{h["Grpc-Status"], h[http.TrailerPrefix+"Grpc-Status"]} {
		if len(v) > 0 && v[0] != "0" {
			return true
		}
	}
	return false
}

// refused returns the cookies to empty with a response that a back end
// refused for its SCONE: the handler answered with an error whose
// ErrorHeader names a code of clearsCookie (WriteError of a back end's
// error). The Middleware cannot tell which back end's SCONE it was, so
// every SCONE cookie of the request but the service's own (which opened)
// is emptied.
func (rw *responseWriter) refused() []string {
	if rw.status < 400 {
		return nil
	}
	if c, _ := hook.ParseCode(rw.w.Header().Get(ErrorHeader)); !clearsCookie(c) {
		return nil
	}
	own := namePrefix(rw.secure, cookiePath(rw.scope)) + cookieName(rw.m.service)
	var out []string
	for _, name := range rw.in.cookies {
		if name != own {
			out = append(out, name)
		}
	}
	return out
}

// localAddr is the address the request came in on, for the SCONE's
// Endpoint field, or "".
func localAddr(r *http.Request) string {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return a.String()
	}
	return ""
}
