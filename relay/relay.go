package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/grpcframe"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/internal/hooktrace"
	"github.com/scone-project/scone/sconegrpc"
)

// Server is a relay: a gRPC server that forwards every call to its
// upstreams, holding the calls' SCONEs in its Store on the clients' behalf.
type Server struct {
	cfg   Config
	grpc  *grpc.Server
	conn  *grpc.ClientConn
	retry *grpc.ClientConn // for the calls that may be re-sent; nil if none may
	kinds *kinds
	turns hook.Turns[turnKey]
	reg   *prometheus.Registry
	m     *metrics
	tr    tracing
}

// New returns a relay for cfg, connected (lazily) to its upstreams.
func New(cfg Config) (*Server, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, reg: prometheus.NewRegistry()}
	s.m = newMetrics(s.reg, cfg.Store)
	s.tr = newTracing(cfg.TracerProvider)
	r := manual.NewBuilderWithScheme("relay-upstreams")
	eps := make([]resolver.Endpoint, len(cfg.Upstreams))
	for i, a := range cfg.Upstreams {
		eps[i] = resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}}
	}
	r.InitialState(resolver.State{Endpoints: eps})
	creds := insecure.NewCredentials()
	if cfg.UpstreamTLS != nil {
		creds = credentials.NewTLS(cfg.UpstreamTLS)
	}
	dopts := []grpc.DialOption{
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})),
	}
	if cfg.Dial != nil {
		dopts = append(dopts, grpc.WithContextDialer(cfg.Dial))
	}
	conn, err := grpc.NewClient(r.Scheme()+":///upstreams", append(dopts, grpc.WithDisableRetry())...)
	if err != nil {
		return nil, err
	}
	s.conn = conn
	if cfg.RetryAttempts > 1 {
		s.retry, err = grpc.NewClient(r.Scheme()+":///upstreams", append(dopts,
			grpc.WithDefaultServiceConfig(retryServiceConfig(cfg.RetryAttempts, cfg.RetryBackoff)),
			grpc.WithStatsHandler(attemptCounter{}))...)
		if err != nil {
			conn.Close()
			return nil, err
		}
	}
	s.kinds = newKinds(conn)
	opts := []grpc.ServerOption{grpc.UnknownServiceHandler(s.relay), grpc.ForceServerCodecV2(rawCodec{})}
	if cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	s.grpc = grpc.NewServer(opts...)
	return s, nil
}

// Serve serves gRPC on lis until Stop or GracefulStop, and then returns
// nil, as it does if the server was stopped before Serve began (a shutdown
// that came first is not an error).
func (s *Server) Serve(lis net.Listener) error {
	if err := s.grpc.Serve(lis); !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// Stop stops at once: open calls fail. The store is not closed.
func (s *Server) Stop() {
	s.grpc.Stop()
	s.closeConns()
}

// GracefulStop waits for open calls to end, then stops.
func (s *Server) GracefulStop() {
	s.grpc.GracefulStop()
	s.closeConns()
}

func (s *Server) closeConns() {
	s.conn.Close()
	if s.retry != nil {
		s.retry.Close()
	}
}

// Metrics returns the registry of the relay's Prometheus metrics.
func (s *Server) Metrics() *prometheus.Registry { return s.reg }

var streamDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

// turnKey is what a relay's calls take turns by: a client and a service.
type turnKey struct{ client, group string }

// relay forwards one call, of any method and shape.
func (s *Server) relay(_ any, ss grpc.ServerStream) error {
	ss, span := s.tr.startCall(ss)
	err := s.relayCall(ss)
	s.m.requests.WithLabelValues(status.Code(err).String()).Inc()
	endCall(span, err)
	return err
}

func (s *Server) relayCall(ss grpc.ServerStream) (err error) {
	ctx := ss.Context()
	method, ok := grpc.MethodFromServerStream(ss)
	if !ok {
		return status.Error(codes.Internal, "relay: no method")
	}
	md, _ := metadata.FromIncomingContext(ctx)
	out := forwardable(md)
	propagate(ctx, out) // the upstream call is a child of the relay's span
	if s.cfg.IdentityHeader != "" {
		delete(out, strings.ToLower(s.cfg.IdentityHeader)) // the relay vouches for nobody upstream
	}
	client, err := s.cfg.Identity(ctx)
	if err != nil {
		return s.refuse(err)
	}
	_, clientHooked := md[grpcframe.MetadataKey]
	kd := s.kinds.of(method)
	unary := kd.unary()

	// A unary call's one request message comes first: a client that runs
	// the hook may carry its own SCONEs in it, and then holds them itself.
	var firstMsg *rawMsg
	if unary && client != "" && !clientHooked {
		firstMsg = &rawMsg{}
		if err := ss.RecvMsg(firstMsg); err != nil {
			return err
		}
		b := firstMsg.data.Materialize()
		firstMsg.data.Free()
		firstMsg.data = mem.BufferSlice{mem.SliceBuffer(b)}
		_, _, clientHooked = grpcframe.SplitBody(b)
	}
	hold := client != "" && !clientHooked // else the SCONEs are the client's to hold
	body := hold && unary
	var sent [][]byte
	if hold {
		// One call of a client at a time per service, through this relay:
		// two calls from the same SCONEs would each seal a successor.
		release, err := s.turns.Take(ctx, turnKey{client, sconegrpc.DefaultScope(method)})
		if err != nil {
			return status.FromContextError(err).Err()
		}
		defer release()
		t := time.Now()
		gctx, span := s.tr.StartContext(ctx, hooktrace.StoreGet)
		sent, err = s.cfg.Store.Get(gctx, client, method)
		s.m.storeTime.WithLabelValues("get").Observe(time.Since(t).Seconds())
		endGet(span, sent, err)
		if err != nil {
			return s.refuse(err)
		}
		s.m.attached.Add(float64(len(sent)))
		if len(sent) > 0 {
			s.m.lookups.WithLabelValues("hit").Inc()
		} else {
			s.m.lookups.WithLabelValues("miss").Inc()
		}
		f := &grpcframe.Frame{SCONEs: sent}
		if body {
			s.m.carried.WithLabelValues("body").Inc()
			b := grpcframe.AppendBodyField(make([]byte, 0, 64+firstMsg.data.Len()), f)
			b = append(b, firstMsg.data.Materialize()...)
			firstMsg.data = mem.BufferSlice{mem.SliceBuffer(b)}
		} else {
			s.m.carried.WithLabelValues("metadata").Inc()
			out.Set(grpcframe.MetadataKey, string(grpcframe.AppendFrame(nil, f)))
		}
	}
	cctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, out))
	defer cancel()
	conn := s.conn
	if s.retry != nil && retries(method, kd, s.cfg.RetryMethods) {
		// The same SCONEs go with every attempt: gRPC re-sends the
		// messages and metadata of this one stream.
		conn = s.retry
		var attempts *atomic.Int32
		cctx, attempts = withAttempts(cctx)
		defer func() { s.m.countRetries(attempts.Load(), status.Code(err)) }()
	}
	cs, err := conn.NewStream(cctx, streamDesc, method)
	if err != nil {
		return err
	}
	go pump(ss, cs, cancel, firstMsg)

	if h, err := cs.Header(); err == nil {
		if err := ss.SendHeader(h); err != nil {
			return err
		}
	}
	var upErr error
	var frames [][]byte // the reply's frames: from its body, then its trailer
	for {
		m := &rawMsg{}
		if err := cs.RecvMsg(m); err != nil {
			if !errors.Is(err, io.EOF) {
				upErr = err
			}
			break
		}
		if body {
			// Take the frame off the reply, which the client does not know.
			b := m.data.Materialize()
			m.data.Free()
			if fr, rest, ok := grpcframe.SplitBody(b); ok {
				frames = append(frames, fr)
				b = rest
			}
			m.data = mem.BufferSlice{mem.SliceBuffer(b)}
		}
		if err := ss.SendMsg(m); err != nil {
			return err
		}
	}
	trailer := cs.Trailer()
	if hold {
		for _, v := range trailer[grpcframe.MetadataKey] {
			frames = append(frames, []byte(v))
		}
		delete(trailer, grpcframe.MetadataKey)
		if err := s.keep(ctx, client, frames, sent); err != nil {
			return s.refuse(err)
		}
	} else if len(trailer[grpcframe.MetadataKey]) > 0 {
		s.m.passthrough.Inc()
	}
	ss.SetTrailer(trailer)
	return upErr
}

// keep stores the SCONEs of a reply's frames.
func (s *Server) keep(ctx context.Context, client string, frames [][]byte, sent [][]byte) error {
	if len(frames) == 0 {
		return nil
	}
	var r hook.Reply
	for _, v := range frames {
		f, err := grpcframe.ParseFrame(v)
		if err != nil {
			return upstreamFault(err)
		}
		for _, tok := range f.SCONEs {
			// A copy: the store keeps it, not the whole reply it came in.
			r.SCONEs = append(r.SCONEs, bytes.Clone(tok))
		}
		r.Dropped = append(r.Dropped, f.Dropped...)
	}
	for _, tok := range r.SCONEs {
		if err := s.check(tok); err != nil {
			return upstreamFault(err)
		}
	}
	if r.Empty() {
		return nil
	}
	t := time.Now()
	actx, span := s.tr.StartContext(ctx, hooktrace.StoreApply)
	err := s.cfg.Store.Apply(actx, client, &r, sent)
	s.m.storeTime.WithLabelValues("apply").Observe(time.Since(t).Seconds())
	span.Committed("", &r, err)
	if err != nil {
		return err
	}
	s.m.stored.Add(float64(len(r.SCONEs)))
	s.m.dropped.Add(float64(len(r.Dropped)))
	return nil
}

// check refuses a SCONE from an upstream that the relay must not store: one
// over the size limit, or malformed. The relay holds no key, so it cannot
// tell an authentic SCONE from a forged one of the right layout: it trusts
// its upstreams (reach them over TLS, Config.UpstreamTLS), and the servers
// authenticate every SCONE they are given back.
func (s *Server) check(tok []byte) error { return checkSCONE(tok, s.cfg.MaxSize) }

// checkSCONE is Server.check, for a relay of either transport.
func checkSCONE(tok []byte, maxSize int) error {
	if len(tok) > maxSize {
		return scone.NewError(scone.CodeTooLarge, "an upstream sent a SCONE over the relay's size limit")
	}
	_, err := hook.Peek(tok)
	return err
}

// upstreamFault reports a reply the relay refuses to store: the client's
// call fails, and nothing of the reply is kept.
func upstreamFault(err error) error {
	return scone.WrapError(scone.CodeOf(err), "refused a SCONE from the upstream: "+messageOf(err), err)
}

func messageOf(err error) string {
	var se *scone.Error
	if errors.As(err, &se) {
		return se.Message()
	}
	return err.Error()
}

// refuse turns a relay's own error into the call's status.
func (s *Server) refuse(err error) error {
	c := scone.CodeOf(err)
	s.m.refused.WithLabelValues(c.String()).Inc()
	s.cfg.Logger.Warn("relay refused a call", "code", c.String(), "err", err)
	if c == scone.CodeUnknown {
		return status.Error(codes.Unavailable, "relay: "+err.Error())
	}
	return sconegrpc.Status(err).Err()
}

// pump forwards the client's messages upstream, then half-closes. first,
// if set, is the first message, already read from the client.
func pump(ss grpc.ServerStream, cs grpc.ClientStream, cancel context.CancelFunc, first *rawMsg) {
	if first != nil {
		if err := cs.SendMsg(first); err != nil {
			return
		}
	}
	for {
		m := &rawMsg{}
		if err := ss.RecvMsg(m); err != nil {
			if errors.Is(err, io.EOF) {
				cs.CloseSend()
			} else {
				cancel()
			}
			return
		}
		if err := cs.SendMsg(m); err != nil {
			return // the upstream side reports the error
		}
	}
}

// forwardable copies the metadata of a call that may go upstream: gRPC's own
// and HTTP/2's reserved keys stay behind.
func forwardable(md metadata.MD) metadata.MD {
	out := make(metadata.MD, len(md))
	for k, v := range md {
		if strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") ||
			k == "content-type" || k == "user-agent" || k == "te" {
			continue
		}
		out[k] = v
	}
	return out
}
