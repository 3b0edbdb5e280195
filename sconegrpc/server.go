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

// call is one request being served.
type call struct {
	ctx      context.Context
	st       *scone.State
	carry    *carry
	ownScope string // the scope of the SCONE restored, for a drop
	reset    *drop  // a SCONE that did not open, dropped under WithResetOnFailure
	sealSize int    // the buffer to seal the new SCONE into
}

func (h *server) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	in, hooked, body, err := requestFrame(ctx, req)
	if err != nil {
		return nil, statusError(err)
	}
	if !hooked {
		return handler(h.plainContext(ctx, info.FullMethod), req)
	}
	c, err := h.begin(ctx, info.FullMethod, &in)
	if err != nil {
		return nil, err
	}
	resp, herr := handler(c.ctx, req)
	out, err := h.finish(c, herr)
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
	if !hooked {
		return handler(srv, &serverStream{ss, h.plainContext(ctx, info.FullMethod)})
	}
	c, err := h.begin(ctx, info.FullMethod, &in)
	if err != nil {
		return err
	}
	herr := handler(srv, &serverStream{ss, c.ctx})
	out, err := h.finish(c, herr)
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

// plainContext gives a call from a client without the hook an empty state,
// so handlers work the same; nothing is sealed after it, and its calls to
// back ends carry no state either.
func (h *server) plainContext(ctx context.Context, method string) context.Context {
	want := scone.Expect{Service: h.cfg.serviceID(method), Client: h.cfg.identity(ctx)}
	ctx = withCarry(ctx, &carry{plain: true})
	return scone.NewContext(ctx, scone.NewState(want, h.cfg.scope(method)))
}

// begin restores the state of a request and prepares its carry.
func (h *server) begin(ctx context.Context, method string, in *frame) (*call, error) {
	service := h.cfg.serviceID(method)
	scope := in.scope
	if scope == "" {
		scope = h.cfg.scope(method)
	}
	want := scone.Expect{Service: service, Client: h.cfg.identity(ctx)}
	own, ownScope, passengers, err := splitSCONEs(in.scones, service, scope)
	if err != nil {
		return nil, statusError(err)
	}
	// A new seal is usually about the size of the last one.
	c := &call{ownScope: ownScope, sealSize: max(len(own)+256, 1024)}
	c.st, err = h.sealer.Restore(ctx, own, want, scope)
	if err != nil {
		if !h.cfg.resetOnError || !resettable(scone.CodeOf(err)) {
			return nil, statusError(err)
		}
		c.reset = &drop{service, ownScope}
		c.st = scone.NewState(want, scope)
	}
	if c.carry, err = newCarry(scope, passengers); err != nil {
		return nil, statusError(err)
	}
	c.ctx = withCarry(scone.NewContext(ctx, c.st), c.carry)
	return c, nil
}

// resettable reports whether an error of Restore is about the SCONE itself,
// which WithResetOnFailure replaces; a store that is down or full is a
// problem of the server, and fails the call.
func resettable(c scone.Code) bool {
	switch c {
	case scone.CodeMalformed, scone.CodeTampered, scone.CodeExpired, scone.CodeUnknownKey,
		scone.CodeRevoked, scone.CodeTooLarge, scone.CodeWrongClient, scone.CodeRolledBack:
		return true
	}
	return false
}

// finish seals the state after the handler and returns the reply's frame,
// or nil when there is nothing to send. The new SCONE is sealed into a
// pooled buffer: release the frame once it is encoded.
func (h *server) finish(c *call, herr error) (*frame, error) {
	if herr != nil && !c.st.AppliesOnError() {
		return nil, nil
	}
	out := &frame{}
	if c.reset != nil {
		out.dropped = append(out.dropped, *c.reset)
	}
	out.pooled = mem.DefaultBufferPool().Get(c.sealSize)
	outcome, tok, err := h.sealer.Commit((*out.pooled)[:0], c.st)
	if err != nil {
		out.release()
		return nil, statusError(err)
	}
	if cap(tok) != cap(*out.pooled) {
		out.release() // the SCONE outgrew the buffer and has a slice of its own
	}
	switch outcome {
	case scone.Updated:
		out.scones = append(out.scones, tok)
	case scone.Dropped:
		out.dropped = append(out.dropped, drop{c.st.Service(), c.ownScope})
	}
	c.carry.changes(out)
	if out.empty() {
		out.release()
		return nil, nil
	}
	return out, nil
}

// splitSCONEs picks this service's SCONE out of a request's SCONEs (the one
// filed under the request's scope, else the newest) and returns the others,
// the passengers for back ends.
func splitSCONEs(tokens [][]byte, service, scope string) (own []byte, ownScope string, passengers [][]byte, err error) {
	var ownVersion uint64
	var ownScopeB []byte
	for _, tok := range tokens {
		hdr, err := scone.Peek(tok)
		if err != nil {
			return nil, "", nil, err
		}
		if string(hdr.Service) != service {
			passengers = append(passengers, tok)
			continue
		}
		inScope, ownInScope := string(hdr.Scope) == scope, own != nil && string(ownScopeB) == scope
		if own == nil || inScope && !ownInScope || inScope == ownInScope && hdr.Version > ownVersion {
			own, ownScopeB, ownVersion = tok, hdr.Scope, hdr.Version
		}
	}
	if string(ownScopeB) == scope {
		return own, scope, passengers, nil
	}
	return own, string(ownScopeB), passengers, nil
}

// serverStream gives a stream handler the context with its state.
type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }
