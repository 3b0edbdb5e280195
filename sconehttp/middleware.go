package sconehttp

import (
	"bytes"
	"errors"
	"net/http"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/internal/hookmetrics"
)

// Middleware returns middleware that serves every request of service with
// its SCONEs: it opens the request's SCONE of the service into the request
// context's scone.State (one that does not open gets WriteError's response,
// and the handler does not run), runs the handler, and seals what changed
// into the response: in cookies, or in headers when the request came with
// the Scone header (a Transport). A response with a status of 400 or more
// carries no new SCONE, so the holder keeps what it had, unless the handler
// called State.ApplyOnError.
//
// The state is sealed before the response's headers go out, so the
// Middleware holds the body back until the handler returns, or until it
// writes more than the buffer limit or flushes (see WithBufferLimit).
//
// It panics if the metrics of WithMetrics cannot be registered.
func Middleware(s *scone.Sealer, service string, opts ...Option) func(http.Handler) http.Handler {
	m := &middleware{sealer: s, service: service, cfg: newConfig(opts)}
	if m.cfg.metrics != nil {
		var err error
		if m.metrics, err = hookmetrics.New(m.cfg.metrics, hookmetrics.HTTP); err != nil {
			panic("sconehttp: " + err.Error())
		}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(w, r, next) })
	}
}

type middleware struct {
	sealer  *scone.Sealer
	service string
	cfg     config
	metrics *hookmetrics.Metrics // nil without WithMetrics
}

// fail counts a request the middleware failed, and writes its error.
func (m *middleware) fail(w http.ResponseWriter, err error) {
	m.metrics.Failed(m.service, err)
	WriteError(w, err)
}

func (m *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	tokens, byHeader, err := requestSCONEs(r)
	if err != nil {
		m.fail(w, err)
		return
	}
	scope := m.cfg.scope(r)
	if s := r.Header.Get(HeaderScope); byHeader && s != "" {
		if len(s) > maxScopeLen {
			m.fail(w, scone.NewError(scone.CodeMalformed, HeaderScope+" longer than 255 bytes"))
			return
		}
		scope = s
	}
	x, err := m.metrics.Begin(r.Context(), m.sealer, hook.Incoming{
		SCONEs:         tokens,
		Expect:         scone.Expect{Service: m.service, Client: m.cfg.identity(r)},
		Scope:          scope,
		ResetOnFailure: m.cfg.resetOnError,
	})
	if err != nil {
		m.fail(w, err)
		return
	}
	rw := &responseWriter{w: w, m: m, x: x, req: r, byHeader: byHeader}
	next.ServeHTTP(rw, r.WithContext(x.Context()))
	rw.close()
}

// responseWriter holds the response back until the state is sealed.
type responseWriter struct {
	w        http.ResponseWriter
	m        *middleware
	x        *hook.Exchange
	req      *http.Request
	byHeader bool

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
	reply, err := rw.m.metrics.Finish(rw.x, nil, rw.status >= 400)
	hook.Freeze(rw.x.State())
	var cookies []*http.Cookie
	if err == nil && !rw.byHeader {
		cookies, err = rw.m.cfg.cookies.replyCookies(&reply, rw.req, hook.Now(rw.m.sealer))
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
	if !reply.Empty() {
		h.Add("Cache-Control", `no-cache="Set-Cookie, Scone"`)
	}
	if rw.byHeader {
		setHeaders(h, &reply)
	}
	for _, c := range cookies {
		h.Add("Set-Cookie", c.String())
	}
	rw.w.WriteHeader(rw.status)
	rw.w.Write(rw.buf.Bytes())
	rw.buf = bytes.Buffer{}
}
