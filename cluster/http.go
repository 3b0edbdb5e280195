package cluster

import (
	"bytes"
	"context"
	"errors"
	"net/http"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hooktrace"
	"github.com/scone-project/scone/internal/httpident"
	"github.com/scone-project/scone/sconehttp"
)

// Middleware returns the server hook of cluster mode for net/http: what
// UnaryServerInterceptor does for gRPC, around an HTTP handler of service.
// For each request from a named client it reads the client's record from
// its owners, restores the state of service into the request's context
// (the handler is the same as under sconehttp.Middleware), runs the
// handler, and, if the state changed, writes the new record to the k
// owners before the response leaves. The SCONEs it seals have scope
// ("/" if empty), and those held are restored for a request whose path
// the scope matches; the response carries none, and the client needs no
// SCONE code.
//
// The client is named by Config.Identity (or IdentityHeader), which sees
// the request as a gRPC call: its headers as incoming metadata, with keys
// lower-cased, and its verified TLS client certificate as the peer's. A
// request that names no client runs without state.
//
// The request fails, and nothing changes, as a gRPC call would, with the
// HTTP status of the scone.Code (sconehttp.HTTPStatus) and the
// sconehttp.ErrorHeader (sconehttp.WriteError): 503 (unavailable) when
// fewer than k members are live or the record cannot be read, 409
// (conflict) when another request changed the client's state first, 504
// (in_doubt) when a failed write may still land. A response with a status
// of 400 or more keeps no change, unless the handler called
// State.ApplyOnError. In degrade mode the response says in the
// CopiesHeader how many owners took a write below k.
//
// The response is held back whole until the record is written: a handler
// that streams (flushes) does not stream through it. Unsafe requests from
// another origin are refused with 403, as by sconehttp.Middleware (a
// browser presents its client certificate to any site that asks).
func (n *Node) Middleware(s *scone.Sealer, service, scope string) func(http.Handler) http.Handler {
	m, tr := n.hookMetrics(), hooktrace.New(n.cfg.TracerProvider)
	if scope == "" {
		scope = "/"
	}
	cop := http.NewCrossOriginProtection()
	return func(next http.Handler) http.Handler {
		return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			bw := &heldResponse{header: make(http.Header)}
			q := request{
				service:  service,
				scope:    scope,
				target:   r.URL.Path,
				identify: func() (string, error) { return n.cfg.Identity(httpident.Context(r)) },
				run: func(ctx context.Context) error {
					next.ServeHTTP(bw, r.WithContext(ctx))
					if bw.status() >= 400 {
						return errFailedResponse
					}
					return nil
				},
				degraded: func(copies string) { bw.header.Set(CopiesHeader, copies) },
			}
			if _, err := n.serveState(r.Context(), s, m, tr, q); err != nil {
				m.Failed(service, err)
				sconehttp.WriteError(w, err)
				return
			}
			bw.send(w)
		}))
	}
}

// errFailedResponse is a handler's response with a status of 400 or more:
// its state is not kept.
var errFailedResponse = errors.New("cluster: the handler answered with an error status")

// heldResponse is a handler's response, held back until its state is on
// the owners.
type heldResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header { return h.header }

func (h *heldResponse) WriteHeader(code int) {
	if h.code == 0 && code >= 200 {
		h.code = code
	}
}

func (h *heldResponse) Write(b []byte) (int, error) {
	if h.code == 0 {
		h.code = http.StatusOK
	}
	return h.body.Write(b)
}

func (h *heldResponse) status() int {
	if h.code == 0 {
		return http.StatusOK
	}
	return h.code
}

// send writes the response held.
func (h *heldResponse) send(w http.ResponseWriter) {
	dst := w.Header()
	for k, v := range h.header {
		dst[k] = v
	}
	w.WriteHeader(h.status())
	w.Write(h.body.Bytes())
}
