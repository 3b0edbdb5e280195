package sconegrpc

import (
	"context"
	"net"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/grpcframe"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/internal/hookmetrics"
	"github.com/scone-project/scone/internal/hooktrace"
)

// ServerOptions returns the grpc.ServerOptions that install the server hook:
// the unary and stream interceptors, and Codec so unary replies carry
// SCONEs in their body. Put the options first among the server's
// interceptors, so the others see the handler's own replies. It panics if
// the metrics of WithMetrics cannot be registered.
func ServerOptions(s *scone.Sealer, opts ...ServerOption) []grpc.ServerOption {
	opts = append(opts[:len(opts):len(opts)], WithBodyReplies())
	h := newServer(s, opts)
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(Codec()),
		grpc.ChainUnaryInterceptor(h.unary),
		grpc.ChainStreamInterceptor(h.stream),
	}
}

// UnaryServerInterceptor returns the server hook for unary calls. For each
// call it opens the SCONE of this service that came with the request into
// the context's scone.State (a SCONE that does not open fails the call with
// its mapped status, see Status), runs the handler, and, when the handler
// succeeds, seals what changed and attaches it to the reply, with what the
// back ends called during the request sent back. A failed handler leaves
// every holder's SCONE as it was, unless it called State.ApplyOnError.
//
// Calls from clients without the hook run with an empty State each time:
// their state is not carried, and their replies carry nothing extra.
//
// It panics if the metrics of WithMetrics cannot be registered.
func UnaryServerInterceptor(s *scone.Sealer, opts ...ServerOption) grpc.UnaryServerInterceptor {
	return newServer(s, opts).unary
}

// StreamServerInterceptor returns the server hook for streaming calls. The
// SCONEs come in the request headers and go back in the trailers, so the
// state is restored before the handler runs and sealed after it returns.
// It panics if the metrics of WithMetrics cannot be registered.
func StreamServerInterceptor(s *scone.Sealer, opts ...ServerOption) grpc.StreamServerInterceptor {
	return newServer(s, opts).stream
}

type server struct {
	sealer    *scone.Sealer
	cfg       serverConfig
	metrics   *hookmetrics.Metrics // nil without WithMetrics
	trace     *hooktrace.Tracer    // nil: the provider of each call's span
	endpoints endpointNames
}

func newServer(s *scone.Sealer, opts []ServerOption) *server {
	h := &server{sealer: s, cfg: newServerConfig(opts)}
	h.trace = hooktrace.New(h.cfg.tracer)
	if h.cfg.metrics != nil {
		m, err := hookmetrics.New(h.cfg.metrics, hookmetrics.GRPC)
		if err != nil {
			panic("sconegrpc: " + err.Error())
		}
		h.metrics = m
	}
	return h
}

func (h *server) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	var scones [2][]byte // most requests carry one SCONE, or a few
	in := grpcframe.Frame{SCONEs: scones[:0]}
	hooked, body, spare, err := requestFrame(ctx, req, &in)
	if err != nil {
		return nil, h.fail(h.cfg.serviceID(info.FullMethod), err)
	}
	// The state is decrypted into a pooled buffer, given back once the reply
	// is sealed (Exchange.Release).
	inSize := tokensSize(in.SCONEs)
	data := noData
	if inSize > 0 {
		data = dataPool.Get(inSize)
	}
	x, err := h.begin(ctx, info.FullMethod, &in, hooked, *data)
	if spare != nil {
		// The request's frame: Begin keeps none of its bytes.
		b := new([]byte)
		*b = spare
		wirePool.Put(b)
	}
	if err != nil {
		putData(data)
		return nil, err
	}
	resp, herr := handler(x.Context(), req)
	out, err := h.finish(x, herr, inSize)
	x.Release()
	putData(data)
	switch {
	case err != nil:
		return nil, err
	case out == nil:
		h.served(x, hooked, nil)
		return resp, herr
	case herr == nil && body && h.cfg.bodyReplies:
		h.served(x, hooked, &out.frame)
		out.msg = resp
		return out, nil
	}
	enc := grpcframe.Encode(&out.frame.Frame)
	out.frame.release()
	if terr := grpc.SetTrailer(ctx, metadata.Pairs(metadataKey, string(enc))); terr != nil {
		return nil, h.fail(x.Service(), scone.WrapError(scone.CodeInternal, "cannot attach SCONEs to the reply", terr))
	}
	h.served(x, hooked, &out.frame)
	return resp, herr
}

// noData stands for no data buffer, for a request that carries no SCONE.
var noData = new([]byte)

func putData(data *[]byte) {
	if data != noData {
		dataPool.Put(data)
	}
}

// tokensSize returns the bytes of tokens.
func tokensSize(tokens [][]byte) int {
	n := 0
	for _, t := range tokens {
		n += len(t)
	}
	return n
}

func (h *server) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	in, hooked, err := framesFromValues(metadata.ValueFromIncomingContext(ctx, metadataKey))
	if err != nil {
		return h.fail(h.cfg.serviceID(info.FullMethod), err)
	}
	x, err := h.begin(ctx, info.FullMethod, &in, hooked, nil)
	if err != nil {
		return err
	}
	herr := handler(srv, &serverStream{ss, x.Context()})
	out, err := h.finish(x, herr, tokensSize(in.SCONEs))
	if err != nil {
		return err
	}
	var sent *outFrame
	if out != nil {
		enc := grpcframe.Encode(&out.frame.Frame)
		out.frame.release()
		ss.SetTrailer(metadata.Pairs(metadataKey, string(enc)))
		sent = &out.frame
	}
	h.served(x, hooked, sent)
	return herr
}

// begin restores the state of a request, into data's storage if it has
// room. A call from a client without the hook gets an empty state, and
// nothing is sealed after it.
func (h *server) begin(ctx context.Context, method string, in *grpcframe.Frame, hooked bool, data []byte) (*hook.Exchange, error) {
	scope := in.Scope
	if scope == "" {
		scope = h.cfg.scope(method)
	}
	service := h.cfg.serviceID(method)
	span := h.trace.Start(ctx, hooktrace.Restore)
	x, err := h.metrics.Begin(ctx, h.sealer, hook.Incoming{
		SCONEs:         in.SCONEs,
		Expect:         scone.Expect{Service: service, Client: h.cfg.identity(ctx)},
		Scope:          scope,
		Plain:          !hooked,
		ResetOnFailure: h.cfg.resetOnError,
		Nested:         in.Scope != "",
		Data:           data,
		Endpoint:       h.endpoints.of(ctx),
		Operation:      method,
	})
	span.Restored(service, in.SCONEs, x, !hooked, err)
	if err != nil {
		if r := hook.Recovery(err); !r.Empty() {
			// A spent version whose reply was lost: the refusal carries the
			// session's newest SCONE, and the holder goes on with it.
			f := grpcframe.Frame{SCONEs: r.SCONEs, Dropped: r.Dropped}
			grpc.SetTrailer(ctx, metadata.Pairs(metadataKey, string(grpcframe.Encode(&f))))
		}
		return nil, h.fail(service, err)
	}
	return x, nil
}

// finish seals the state after the handler and returns the reply, its
// frame set and its message not yet, or nil when there is nothing to send.
// The new SCONE is sealed into a pooled buffer, about the size of the
// request's SCONEs (inSize bytes): release the frame once it is encoded.
func (h *server) finish(x *hook.Exchange, herr error, inSize int) (*bodyOut, error) {
	out := &bodyOut{frame: outFrame{pooled: wirePool.Get(max(inSize+256, 1024))}}
	f := &out.frame
	span := h.trace.Start(x.Context(), hooktrace.Commit)
	r, err := h.metrics.Finish(x, (*f.pooled)[:0], herr != nil)
	span.Committed(x.Service(), &r, err)
	if err != nil {
		f.release()
		return nil, h.fail(x.Service(), err)
	}
	if r.Empty() {
		f.release()
		return nil, nil
	}
	if len(r.SCONEs) == 0 || &r.SCONEs[0][0] != &(*f.pooled)[0] {
		f.release() // no new SCONE, or it outgrew the buffer and has a slice of its own
	}
	f.SCONEs, f.Dropped = r.SCONEs, r.Dropped
	return out, nil
}

// served counts a call the hook served, with out the reply's frame (nil:
// nothing sent). It reads only the lengths of a released frame's SCONEs.
func (h *server) served(x *hook.Exchange, hooked bool, out *outFrame) {
	if h.metrics == nil {
		return
	}
	var r *hook.Reply
	if out != nil {
		r = &hook.Reply{SCONEs: out.SCONEs, Dropped: out.Dropped}
	}
	h.metrics.Served(x, !hooked, r)
}

// fail counts a call of service the hook failed, and returns its status.
func (h *server) fail(service string, err error) error {
	h.metrics.Failed(service, err)
	return statusError(err)
}

// serverStream gives a stream handler the context with its state.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }

// endpointNames names the endpoint a call came in on (its connection's
// local address) for the SCONE's Endpoint field, remembering the last one:
// calls on one connection share its address, so most calls need no new
// string.
type endpointNames struct{ last atomic.Pointer[endpointName] }

type endpointName struct {
	addr net.Addr
	name string
}

func (e *endpointNames) of(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.LocalAddr == nil {
		return ""
	}
	if l := e.last.Load(); l != nil && sameAddr(l.addr, p.LocalAddr) {
		return l.name
	}
	n := &endpointName{addr: p.LocalAddr, name: p.LocalAddr.String()}
	e.last.Store(n)
	return n.name
}

// sameAddr reports whether a and b are the same address value: for the
// pointers net's connections give, the same connection's.
func sameAddr(a, b net.Addr) bool {
	pa, ok1 := a.(*net.TCPAddr)
	pb, ok2 := b.(*net.TCPAddr)
	return ok1 && ok2 && pa == pb
}
