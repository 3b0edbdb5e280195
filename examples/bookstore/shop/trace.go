package shop

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// Tracing returns the options that trace a replica's calls with otelgrpc
// on tp, passing the W3C trace context: the server option for its server
// (NewServer) and the dial option for its connections to back ends
// (DialBackend). The SCONE hook records its spans (scone.restore,
// scone.commit) under the calls' spans. A nil tp gives no options.
func Tracing(tp trace.TracerProvider) ([]grpc.ServerOption, []grpc.DialOption) {
	if tp == nil {
		return nil, nil
	}
	prop := otelgrpc.WithPropagators(propagation.TraceContext{})
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), prop))},
		[]grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), prop))}
}

// WithTracerProvider makes every replica trace its calls on tp (Tracing).
func WithTracerProvider(tp trace.TracerProvider) DeployOption {
	return func(d *Deployment) {
		s, c := Tracing(tp)
		d.sopts, d.dopts = append(d.sopts, s...), append(d.dopts, c...)
	}
}

// WithServerOptions adds opts to every replica's server.
func WithServerOptions(opts ...grpc.ServerOption) DeployOption {
	return func(d *Deployment) { d.sopts = append(d.sopts, opts...) }
}

// WithDialOptions adds opts to the connections to the back ends.
func WithDialOptions(opts ...grpc.DialOption) DeployOption {
	return func(d *Deployment) { d.dopts = append(d.dopts, opts...) }
}
