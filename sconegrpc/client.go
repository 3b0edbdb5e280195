package sconegrpc

import (
	"context"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/grpcframe"
	"github.com/scone-project/scone/internal/hook"
)

// DialOptions returns the grpc.DialOptions that install the client hook for
// unary and streaming calls, sharing one holder. Put them last among the
// client's interceptors, so the others see the caller's own messages.
//
// A call the server refused for its SCONEs fails with an error that carries
// the scone.Code, for scone.CodeOf, beside its gRPC status (status.Code,
// status.FromError).
func DialOptions(opts ...ClientOption) []grpc.DialOption {
	c := newClient(opts)
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(c.unary),
		grpc.WithChainStreamInterceptor(c.stream),
	}
}

// UnaryClientInterceptor returns the client hook for unary calls. It
// attaches the SCONEs its holder keeps for the target method (by scope, see
// scone.ScopeMatches), keeps the ones the reply brings (newest version wins)
// and deletes the ones the reply drops. Calls to one service are serialised
// unless WithConcurrentCalls is given.
//
// Inside a server handler, with the handler's context, it works for the
// request being served instead: it attaches the SCONEs the request brought
// for back ends, and what the back end returns goes up with the reply.
func UnaryClientInterceptor(opts ...ClientOption) grpc.UnaryClientInterceptor {
	return newClient(opts).unary
}

// StreamClientInterceptor returns the client hook for streaming calls; the
// SCONEs go in the request headers and come back in the trailers, which are
// read when the stream ends. A stream holds its service's turn (see
// WithConcurrentCalls) until it ends or its context is done.
func StreamClientInterceptor(opts ...ClientOption) grpc.StreamClientInterceptor {
	return newClient(opts).stream
}

type client struct {
	cfg    clientConfig
	turns  hook.Turns[originKey] // turns of (holder, call group)
	origin *originHolder         // for the fixed holder, if any
}

type originKey struct {
	h       scone.Holder
	service string
}

func newClient(opts []ClientOption) *client {
	c := &client{cfg: newClientConfig(opts)}
	if c.cfg.holder != nil {
		c.origin = &originHolder{h: c.cfg.holder, c: c}
	}
	return c
}

// forceCodec selects the body-carrier codec for a call.
var forceCodec = grpc.ForceCodecV2(theCodec)

// callHolder is where a call's SCONEs come from and go to: the client's own
// holder, or, inside a served request, that request's carry.
type callHolder interface {
	lock(ctx context.Context, key string) (func(), error)
	attach(dst [][]byte, method string) [][]byte
	requestScope() string
	// apply takes in a reply's frame; sent is what the call attached.
	apply(f *grpcframe.Frame, sent [][]byte) error
}

// holderFor returns the holder of a call, or nil for a call on behalf of a
// client without the hook, which carries no state. A holder picked from
// the call's context comes as own, to be wrapped in an originHolder (the
// caller provides its storage).
func (c *client) holderFor(ctx context.Context, method string) (h callHolder, own scone.Holder, err error) {
	if cr, ok := hook.CarryFrom(ctx); ok {
		if cr.Plain() {
			return nil, nil, nil
		}
		return carryHolder{cr, ServiceName(method)}, nil, nil
	}
	if c.cfg.holderFrom == nil && c.origin != nil {
		return c.origin, nil, nil
	}
	if c.cfg.holderFrom != nil {
		own = c.cfg.holderFrom(ctx)
	}
	if own == nil {
		if c.cfg.noHolder {
			return nil, nil, statusError(scone.NewError(scone.CodeInternal,
				"a back-end call (WithoutHolder) outside a served request: pass the handler's context"))
		}
		return nil, nil, statusError(scone.NewError(scone.CodeInternal, "no holder for this call's context"))
	}
	return nil, own, nil
}

// unaryCall is what the client hook needs for a unary call, in one
// allocation.
type unaryCall struct {
	origin  originHolder
	out     bodyOut
	in      bodyIn
	trailer metadata.MD
	opts    [4]grpc.CallOption // the caller's, the trailer's, the codec's
	sent    [2][]byte          // the SCONEs attached, most often one
	reply   grpcframe.Frame    // the reply's, with storage for
	got     [2][]byte          // its SCONEs
}

func (c *client) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	h, own, err := c.holderFor(ctx, method)
	if err != nil || h == nil && own == nil {
		if err == nil {
			err = invoker(ctx, method, req, reply, cc, opts...)
		}
		return err
	}
	call := new(unaryCall)
	if own != nil {
		call.origin = originHolder{h: own, c: c}
		h = &call.origin
	}
	if !c.cfg.concurrent {
		release, err := h.lock(ctx, c.cfg.group(method))
		if err != nil {
			return err
		}
		defer release()
	}
	out := &call.out.frame
	out.SCONEs, out.Scope = h.attach(call.sent[:0], method), h.requestScope()
	sent := out.SCONEs

	// The caller's slice stays as it was.
	callOpts := append(append(call.opts[:0], opts...), grpc.Trailer(&call.trailer))
	if c.cfg.metadata {
		ctx = metadata.AppendToOutgoingContext(ctx, metadataKey, string(grpcframe.Encode(&out.Frame)))
		err = invoker(ctx, method, req, reply, cc, callOpts...)
	} else {
		call.in.msg, call.out.msg = reply, req
		callOpts = append(callOpts, forceCodec)
		err = invoker(ctx, method, &call.out, &call.in, cc, callOpts...)
	}
	call.reply.SCONEs = call.got[:0]
	if aerr := applyReply(h, sent, call.in.frame, call.in.found, call.trailer, &call.reply); aerr != nil && err == nil {
		err = aerr
	}
	return grpcframe.WrapStatus(err)
}

// applyReply takes in the SCONEs of a reply, from its body and trailers, as
// one change: all of it or, on error, none. f is where the reply's frame is
// gathered, with storage for its SCONEs.
func applyReply(h callHolder, sent [][]byte, body []byte, inBody bool, trailer metadata.MD, f *grpcframe.Frame) error {
	if _, err := mergeValues(f, trailer.Get(metadataKey)); err != nil {
		return statusError(err)
	}
	if inBody {
		if err := f.Merge(body); err != nil {
			return statusError(err)
		}
	}
	if f.Empty() {
		return nil
	}
	if err := h.apply(f, sent); err != nil {
		return statusError(err)
	}
	return nil
}

func (c *client) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	h, own, err := c.holderFor(ctx, method)
	if err != nil {
		return nil, err
	}
	if own != nil {
		h = &originHolder{h: own, c: c}
	}
	if h == nil {
		return streamer(ctx, desc, cc, method, opts...)
	}
	release := func() {}
	if !c.cfg.concurrent {
		if release, err = h.lock(ctx, c.cfg.group(method)); err != nil {
			return nil, err
		}
	}
	out := grpcframe.Frame{SCONEs: h.attach(nil, method), Scope: h.requestScope()}
	ctx = metadata.AppendToOutgoingContext(ctx, metadataKey, string(grpcframe.Encode(&out)))
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		release()
		return nil, grpcframe.WrapStatus(err)
	}
	s := &clientStream{ClientStream: cs, h: h, sent: out.SCONEs, serverStreams: desc.ServerStreams}
	s.release = sync.OnceFunc(release)
	s.stop = context.AfterFunc(ctx, s.release)
	return s, nil
}

// clientStream applies the trailers' SCONEs when the stream ends.
type clientStream struct {
	grpc.ClientStream
	h             callHolder
	sent          [][]byte // the SCONEs the stream carried
	serverStreams bool
	release       func()
	stop          func() bool
	once          sync.Once
}

func (s *clientStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil || !s.serverStreams {
		s.once.Do(func() {
			// A stream that ends well (io.EOF) but whose SCONEs cannot be kept
			// reports that instead: the caller must not think them kept.
			if aerr := applyReply(s.h, s.sent, nil, false, s.ClientStream.Trailer(), new(grpcframe.Frame)); aerr != nil && (err == nil || err == io.EOF) {
				err = aerr
			}
			s.stop()
			s.release()
		})
	}
	return grpcframe.WrapStatus(err)
}

func (s *clientStream) SendMsg(m any) error {
	return grpcframe.WrapStatus(s.ClientStream.SendMsg(m))
}

func (s *clientStream) CloseSend() error {
	return grpcframe.WrapStatus(s.ClientStream.CloseSend())
}

func (s *clientStream) Header() (metadata.MD, error) {
	md, err := s.ClientStream.Header()
	return md, grpcframe.WrapStatus(err)
}

// originHolder is a client's own holder, taking turns per service.
type originHolder struct {
	h scone.Holder
	c *client
}

func (o *originHolder) lock(ctx context.Context, group string) (func(), error) {
	return turnStatus(o.c.turns.Take(ctx, originKey{o.h, group}))
}

// turnStatus passes on a turn, or its context's error as a gRPC status.
func turnStatus(release func(), err error) (func(), error) {
	if err != nil {
		return nil, status.FromContextError(err).Err()
	}
	return release, nil
}

// carryHolder works for the request a front end is serving (hook.Carry),
// for a call to the service route (the gRPC service name, the server
// hook's default service ID): it attaches that service's SCONEs and those
// that came back from it, and takes back only those (hook.Carry.Attach).
type carryHolder struct {
	c     *hook.Carry
	route string
}

func (h carryHolder) lock(ctx context.Context, group string) (func(), error) {
	return turnStatus(h.c.Take(ctx, group))
}

func (h carryHolder) attach(dst [][]byte, _ string) [][]byte { return h.c.Attach(dst, h.route) }
func (h carryHolder) requestScope() string                   { return h.c.Scope() }
func (h carryHolder) apply(f *grpcframe.Frame, _ [][]byte) error {
	return h.c.Apply(h.route, f.Dropped, f.SCONEs)
}

func (o *originHolder) attach(dst [][]byte, method string) [][]byte {
	return o.h.Match(dst, method)
}

func (o *originHolder) requestScope() string { return "" }

// apply keeps a reply's SCONEs. A reply may only end sessions the call
// carried. With a scone.Dict the change is all or nothing; with another
// Holder it is applied one SCONE at a time.
func (o *originHolder) apply(f *grpcframe.Frame, sent [][]byte) error {
	// The frame's tokens are this call's own copies: the holder may keep them.
	return hook.ApplyReply(o.h, &hook.Reply{SCONEs: f.SCONEs, Dropped: f.Dropped}, sent)
}
