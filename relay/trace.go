package relay

import (
	"context"

	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone/internal/hooktrace"
)

// traceContext is how the relay reads and passes on a call's trace
// context: W3C traceparent and tracestate, whatever propagator the process
// set (the relay forwards the rest of the metadata, baggage included, as
// it came).
var traceContext propagation.TraceContext

// tracing starts the relay's spans.
type tracing struct {
	tracer trace.Tracer
	*hooktrace.Tracer
}

func newTracing(tp trace.TracerProvider) tracing {
	return tracing{tracer: tp.Tracer(hooktrace.ScopeName), Tracer: hooktrace.New(tp)}
}

// startCall starts the relay's span of a call, a child of the trace
// context the call came with, and returns the stream with the span in its
// context.
func (t tracing) startCall(ss grpc.ServerStream) (grpc.ServerStream, trace.Span) {
	ctx := ss.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	ctx = traceContext.Extract(ctx, mdCarrier(md))
	method, _ := grpc.MethodFromServerStream(ss)
	service, name := splitMethod(method)
	ctx, span := t.tracer.Start(ctx, hooktrace.Relay, trace.WithSpanKind(trace.SpanKindServer))
	if span.IsRecording() {
		span.SetAttributes(hooktrace.RPCSys.String("grpc"), hooktrace.RPCServ.String(service), hooktrace.RPCMeth.String(name))
	}
	return &tracedStream{ss, ctx}, span
}

// endCall ends the span of a call that ended with err.
func endCall(span trace.Span, err error) {
	if span.IsRecording() {
		c := status.Code(err)
		span.SetAttributes(hooktrace.GRPCCode.Int(int(c)))
		if err != nil {
			span.SetStatus(otelcodes.Error, c.String())
		}
	}
	span.End()
}

// endGet ends the span of a store read that gave sent.
func endGet(span hooktrace.Span, sent [][]byte, err error) {
	if !span.Recording() {
		return
	}
	lookup := "miss"
	if len(sent) > 0 {
		lookup = "hit"
	}
	span.End(err, append(hooktrace.Tokens("", sent), hooktrace.Lookup.String(lookup))...)
}

// propagate puts the trace context of ctx, the relay's span, in the
// metadata of the upstream call, in place of the one the call came with.
func propagate(ctx context.Context, out metadata.MD) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		traceContext.Inject(ctx, mdCarrier(out))
	}
}

func splitMethod(m string) (service, method string) {
	if len(m) > 0 && m[0] == '/' {
		m = m[1:]
	}
	for i := len(m) - 1; i >= 0; i-- {
		if m[i] == '/' {
			return m[:i], m[i+1:]
		}
	}
	return m, ""
}

// tracedStream is a server stream whose context holds the relay's span.
type tracedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *tracedStream) Context() context.Context { return s.ctx }

// mdCarrier carries a trace context in gRPC metadata.
type mdCarrier metadata.MD

func (c mdCarrier) Get(key string) string {
	if v := metadata.MD(c).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c mdCarrier) Set(key, value string) { metadata.MD(c).Set(key, value) }

func (c mdCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}
