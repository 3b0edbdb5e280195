package sconegrpc

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone"
)

// ServerOptions returns the grpc.ServerOptions that install the server hook:
// the unary and stream interceptors, and Codec so unary replies carry
// SCONEs in their body. Put the options first among the server's
// interceptors, so the others see the handler's own replies.
func ServerOptions(s *scone.Sealer, opts ...ServerOption) []grpc.ServerOption {
	opts = append(opts[:len(opts):len(opts)], WithBodyReplies())
	return []grpc.ServerOption{
		grpc.ForceServerCodecV2(Codec()),
		grpc.ChainUnaryInterceptor(UnaryServerInterceptor(s, opts...)),
		grpc.ChainStreamInterceptor(StreamServerInterceptor(s, opts...)),
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
func UnaryServerInterceptor(s *scone.Sealer, opts ...ServerOption) grpc.UnaryServerInterceptor {
	h := &server{sealer: s, cfg: newServerConfig(opts)}
	return h.unary
}

// StreamServerInterceptor returns the server hook for streaming calls. The
// SCONEs come in the request headers and go back in the trailers, so the
// state is restored before the handler runs and sealed after it returns.
func StreamServerInterceptor(s *scone.Sealer, opts ...ServerOption) grpc.StreamServerInterceptor {
	h := &server{sealer: s, cfg: newServerConfig(opts)}
	return h.stream
}

type server struct {
	sealer *scone.Sealer
	cfg    serverConfig
}

func (h *server) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	in, hooked, body, err := requestFrame(ctx, req)
	if err != nil {
		return nil, statusError(err)
	}
	x, err := h.begin(ctx, info.FullMethod, &in, hooked)
	if err != nil {
		return nil, err
	}
	resp, herr := handler(x.Context(), req)
	out, err := h.finish(x, herr, len(in.SCONEs))
	switch {
	case err != nil:
		return nil, err
	case out == nil:
		return resp, herr
	case herr == nil && body && h.cfg.bodyReplies:
		return &bodyOut{msg: resp, frame: out}, nil
	}
	enc := encodeFrame(out)
	out.release()
	if terr := grpc.SetTrailer(ctx, metadata.Pairs(MetadataKey, string(enc))); terr != nil {
		return nil, statusError(scone.WrapError(scone.CodeInternal, "cannot attach SCONEs to the reply", terr))
	}
	return resp, herr
}

func (h *server) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx := ss.Context()
	in, hooked, err := framesFromValues(metadata.ValueFromIncomingContext(ctx, MetadataKey))
	if err != nil {
		return statusError(err)
	}
	x, err := h.begin(ctx, info.FullMethod, &in, hooked)
	if err != nil {
		return err
	}
	herr := handler(srv, &serverStream{ss, x.Context()})
	out, err := h.finish(x, herr, len(in.SCONEs))
	if err != nil {
		return err
	}
	if out != nil {
		enc := encodeFrame(out)
		out.release()
		ss.SetTrailer(metadata.Pairs(MetadataKey, string(enc)))
	}
	return herr
}

// begin restores the state of a request. A call from a client without the
// hook gets an empty state, and nothing is sealed after it.
func (h *server) begin(ctx context.Context, method string, in *Frame, hooked bool) (*scone.Exchange, error) {
	scope := in.Scope
	if scope == "" {
		scope = h.cfg.scope(method)
	}
	x, err := h.sealer.Begin(ctx, scone.Incoming{
		SCONEs:         in.SCONEs,
		Expect:         scone.Expect{Service: h.cfg.serviceID(method), Client: h.cfg.identity(ctx)},
		Scope:          scope,
		Plain:          !hooked,
		ResetOnFailure: h.cfg.resetOnError,
	})
	if err != nil {
		return nil, statusError(err)
	}
	return x, nil
}

// finish seals the state after the handler and returns the reply's frame,
// or nil when there is nothing to send. The new SCONE is sealed into a
// pooled buffer, about the size of the request's: release the frame once it
// is encoded.
func (h *server) finish(x *scone.Exchange, herr error, inSize int) (*Frame, error) {
	out := &Frame{pooled: mem.DefaultBufferPool().Get(max(inSize+256, 1024))}
	r, err := x.Finish((*out.pooled)[:0], herr != nil)
	if err != nil {
		out.release()
		return nil, statusError(err)
	}
	if r.Empty() {
		out.release()
		return nil, nil
	}
	if len(r.SCONEs) == 0 || &r.SCONEs[0][0] != &(*out.pooled)[0] {
		out.release() // no new SCONE, or it outgrew the buffer and has a slice of its own
	}
	out.SCONEs, out.Dropped = r.SCONEs, r.Dropped
	return out, nil
}

// serverStream gives a stream handler the context with its state.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
