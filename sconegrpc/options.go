package sconegrpc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/scone-project/scone"
)

// ServerOption configures the server hook.
type ServerOption interface{ applyServer(*serverConfig) }

// ClientOption configures the client hook.
type ClientOption interface{ applyClient(*clientConfig) }

type serverOptionFunc func(*serverConfig)

func (f serverOptionFunc) applyServer(c *serverConfig) { f(c) }

type clientOptionFunc func(*clientConfig)

func (f clientOptionFunc) applyClient(c *clientConfig) { f(c) }

type serverConfig struct {
	serviceID    func(fullMethod string) string
	scope        func(fullMethod string) string
	identity     func(ctx context.Context) string
	bodyReplies  bool
	resetOnError bool
	metrics      prometheus.Registerer
	tracer       trace.TracerProvider
}

func newServerConfig(opts []ServerOption) serverConfig {
	c := serverConfig{serviceID: ServiceName, scope: DefaultScope, identity: PeerIdentity}
	for _, o := range opts {
		o.applyServer(&c)
	}
	return c
}

// WithServiceID sets how the server hook names the service a method belongs
// to (default ServiceName: the gRPC service name). A deployment may group
// several gRPC services under one service ID so they share one SCONE; then
// they must share its scope too (WithScope), and their clients must take
// turns across the group (WithCallGroup), or two calls to two services of
// the group could each seal a successor of the same SCONE.
func WithServiceID(f func(fullMethod string) string) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.serviceID = f })
}

// WithScope sets the scope a service's SCONEs get when a client calls it
// directly (default DefaultScope: "/package.Service/"). The client attaches
// a SCONE to the calls whose method path the scope matches (see
// scone.ScopeMatches); a front end's back ends use the front end's scope
// instead, whatever this says.
func WithScope(f func(fullMethod string) string) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.scope = f })
}

// WithClientIdentity sets how the server hook identifies the caller, for
// SCONEs bound to a client (scone.WithClientBinding). The default,
// PeerIdentity, uses the verified mTLS client certificate.
func WithClientIdentity(f func(ctx context.Context) string) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.identity = f })
}

// WithBodyReplies makes unary replies carry SCONEs in the message body when
// the request did. It requires the server to use Codec (install it with
// grpc.ForceServerCodecV2); ServerOptions sets both. Without it, replies
// carry SCONEs in trailers, which costs more on the wire.
func WithBodyReplies() ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.bodyReplies = true })
}

// WithResetOnFailure treats SCONEs as a pure cache: a SCONE that does not
// open starts an empty state instead of failing the call, and the reply tells
// the holder to drop the bad SCONE. Off by default, because it silently
// loses the client's state; turn it on only for state that can be rebuilt.
func WithResetOnFailure() ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.resetOnError = true })
}

// WithMetrics makes the server hook record Prometheus metrics on reg, with
// the transport label "grpc": requests by how their state began, errors by
// scone code, SCONEs sealed and dropped, SCONE sizes, and the time spent
// restoring and sealing (the scone_hook_* metrics). Hooks of several
// services or transports may share reg. The interceptors (ServerOptions,
// UnaryServerInterceptor, StreamServerInterceptor) register the metrics
// when they are made, and panic there, like prometheus.MustRegister, if reg
// holds other collectors under the same names.
func WithMetrics(reg prometheus.Registerer) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.metrics = reg })
}

// WithTracerProvider makes the server hook record its OpenTelemetry spans
// on tp: scone.restore and scone.commit, children of the call's span, with
// the service, the SCONE's version, the SCONEs' count and size and the
// outcome (never a SCONE's bytes or state). By default the hook records on
// the provider of the call's span, the one the otelgrpc stats handler
// (otelgrpc.NewServerHandler) started: install that handler to trace
// calls. A call whose context holds no recording span records nothing.
func WithTracerProvider(tp trace.TracerProvider) ServerOption {
	return serverOptionFunc(func(c *serverConfig) { c.tracer = tp })
}

// ServiceName returns the gRPC service name of a full method name:
// "/shop.v1.Cart/Add" gives "shop.v1.Cart".
func ServiceName(fullMethod string) string {
	s := strings.TrimPrefix(fullMethod, "/")
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// DefaultScope returns the scope a service's SCONEs get when a client calls
// it directly: "/shop.v1.Cart/Add" gives "/shop.v1.Cart/".
func DefaultScope(fullMethod string) string {
	if i := strings.LastIndexByte(fullMethod, '/'); i > 0 {
		return fullMethod[:i+1]
	}
	return "/"
}

// PeerIdentity returns "x509-sha256:<hex>", the SHA-256 of the caller's
// verified mTLS client certificate, or "" when the call has none.
func PeerIdentity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return ""
	}
	sum := sha256.Sum256(info.State.VerifiedChains[0][0].Raw)
	return "x509-sha256:" + hex.EncodeToString(sum[:])
}

type clientConfig struct {
	group      func(fullMethod string) string
	holder     scone.Holder
	holderFrom func(context.Context) scone.Holder
	noHolder   bool
	concurrent bool
	metadata   bool
}

func newClientConfig(opts []ClientOption) clientConfig {
	c := clientConfig{group: DefaultScope}
	for _, o := range opts {
		o.applyClient(&c)
	}
	if c.holder == nil && c.holderFrom == nil && !c.noHolder {
		c.holder = scone.NewDict()
	}
	return c
}

// WithHolder sets where the client keeps its SCONEs (default: a new
// scone.Dict per interceptor). Share one holder between the unary and stream
// interceptors of a client; DialOptions does.
func WithHolder(h scone.Holder) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.holder = h })
}

// WithHolderFromContext picks the holder of each call from its context:
// for a process that is the SCONE client of many users over one connection
// (a web back end holding each browser session's SCONEs, say). Calls are
// serialised per holder and service. A call whose context gives nil fails.
func WithHolderFromContext(f func(ctx context.Context) scone.Holder) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.holderFrom = f })
}

// WithoutHolder is for a front end's connections to its back ends: calls
// carry only the SCONEs of the request being served (taken from the
// context), and a call made outside a served request fails instead of
// keeping its back end's SCONEs in the front end, mixed across clients.
func WithoutHolder() ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.noHolder, c.holder = true, nil })
}

// WithConcurrentCalls lets calls from one client to one service run at the
// same time. By default the client hook serialises them (per holder and
// call group, see WithCallGroup), because two calls that start from the same
// SCONE each seal a successor, and the holder can keep only one: the other
// call's change would be lost.
func WithConcurrentCalls() ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.concurrent = true })
}

// WithCallGroup sets which calls take turns (see WithConcurrentCalls): calls
// whose methods give the same group are serialised. The default,
// DefaultScope, groups the methods of one gRPC service; services that share
// a service ID on the server (WithServiceID) must share a group here.
func WithCallGroup(f func(fullMethod string) string) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.group = f })
}

// WithMetadataCarrier makes unary calls carry SCONEs in metadata instead of
// the message body: for servers whose messages are not protobuf. Streams
// always use metadata.
func WithMetadataCarrier() ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.metadata = true })
}
