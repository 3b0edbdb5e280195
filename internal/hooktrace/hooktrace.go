// Package hooktrace records OpenTelemetry spans for what SCONE adds to a
// call, shared by the server hooks (sconegrpc, sconehttp, cluster), the
// relay, cluster nodes and circulating relays, so a trace reads the same
// whatever the transport:
//
//	scone.restore         a server hook restoring a request's state
//	scone.commit          a server hook sealing it into the reply
//	scone.relay           a relay forwarding one call (kind server)
//	scone.relay.store.get    the relay reading the client's SCONEs
//	scone.relay.store.apply  the relay storing the reply's SCONEs
//	scone.cluster.read    a cluster node reading a client's record
//	scone.cluster.write   a cluster node writing it to the owners, with
//	                      a scone.owner.write event per owner and a
//	                      scone.owner.ack event when it answers
//	scone.circulate.handoff  a circulating relay handing copies on
//
// and the span event scone.circulate.query on the span of the store read
// that asked the other relays.
//
// The attributes say which service, which version, how many SCONEs and
// how many bytes, and how it ended (scone.outcome: "ok" or a scone error
// code); never a key, a SCONE's bytes, its state or a client's name.
//
// A hook's spans are children of the call's span (the one otelgrpc or
// otelhttp starts): a call whose context holds no recording span records
// nothing, so a server without tracing pays one context lookup per call.
package hooktrace

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
)

// ScopeName is the instrumentation scope of SCONE's spans.
const ScopeName = "github.com/scone-project/scone"

// The span names.
const (
	Restore    = "scone.restore"
	Commit     = "scone.commit"
	Relay      = "scone.relay"
	StoreGet   = "scone.relay.store.get"
	StoreApply = "scone.relay.store.apply"
	ClusterRd  = "scone.cluster.read"
	ClusterWr  = "scone.cluster.write"
	Handoff    = "scone.circulate.handoff"
)

// The span event names.
const (
	OwnerWriteEvent = "scone.owner.write"
	OwnerAckEvent   = "scone.owner.ack"
	QueryEvent      = "scone.circulate.query"
)

// The attribute keys.
const (
	Service  = attribute.Key("scone.service") // the service ID
	Version  = attribute.Key("scone.version") // the version of the service's own SCONE
	Size     = attribute.Key("scone.size")    // bytes of all the SCONEs
	Count    = attribute.Key("scone.count")   // how many SCONEs
	Dropped  = attribute.Key("scone.dropped") // how many sessions ended
	State    = attribute.Key("scone.state")   // restored, new or plain (see hookmetrics)
	Outcome  = attribute.Key("scone.outcome") // "ok" or the scone error code
	Owner    = attribute.Key("scone.owner")   // a cluster member's name
	Verdict  = attribute.Key("scone.verdict") // an owner's answer to a write
	Copies   = attribute.Key("scone.copies")  // the owners that took a write
	Holders  = attribute.Key("scone.holders") // relays asked, or handed copies
	Missing  = attribute.Key("scone.missing") // relays that did not answer
	Hop      = attribute.Key("scone.hop")     // a circulating copy's hop
	Lookup   = attribute.Key("scone.lookup")  // a relay's store read: hit or miss
	RPCMeth  = attribute.Key("rpc.method")    // as in OpenTelemetry's RPC conventions
	RPCServ  = attribute.Key("rpc.service")   // likewise
	RPCSys   = attribute.Key("rpc.system")    // likewise
	GRPCCode = attribute.Key("rpc.grpc.status_code")
)

// Tracer starts a hook's spans. A nil *Tracer records under the provider
// of each call's span.
type Tracer struct {
	t trace.Tracer
}

// New returns a Tracer that records on tp; nil tp means the provider of
// each call's span.
func New(tp trace.TracerProvider) *Tracer {
	if tp == nil {
		return nil
	}
	return &Tracer{t: tp.Tracer(ScopeName)}
}

// tracer returns the tracer of a span started under parent.
func (t *Tracer) tracer(parent trace.Span) trace.Tracer {
	if t != nil {
		return t.t
	}
	return parent.TracerProvider().Tracer(ScopeName)
}

// Start starts span name as a child of the call's span in ctx, if that
// span is recording; else it returns a Span that records nothing.
func (t *Tracer) Start(ctx context.Context, name string) Span {
	_, s := t.StartContext(ctx, name)
	return s
}

// StartContext is Start, and returns the context with the new span too,
// for what runs inside it.
func (t *Tracer) StartContext(ctx context.Context, name string) (context.Context, Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, Span{}
	}
	ctx, s := t.tracer(parent).Start(ctx, name)
	return ctx, Span{s}
}

// Span is a span a Tracer started, or none: its methods do nothing on a
// Span that records nothing.
type Span struct{ s trace.Span }

// Recording reports whether the span records.
func (s Span) Recording() bool { return s.s != nil }

// Set adds attributes to the span.
func (s Span) Set(kv ...attribute.KeyValue) {
	if s.s != nil {
		s.s.SetAttributes(kv...)
	}
}

// End ends the span with its outcome: "ok", or err's scone code (the span's
// status says Error, with the code only: an error's text may name more).
func (s Span) End(err error, kv ...attribute.KeyValue) {
	if s.s == nil {
		return
	}
	s.s.SetAttributes(kv...)
	s.s.SetAttributes(Outcome.String(OutcomeOf(err)))
	if err != nil {
		s.s.SetStatus(codes.Error, scone.CodeOf(err).String())
	}
	s.s.End()
}

// OutcomeOf is the scone.outcome of err: "ok" or its scone code.
func OutcomeOf(err error) string {
	if err == nil {
		return "ok"
	}
	return scone.CodeOf(err).String()
}

// Restored ends a restore span: the request's SCONEs in, and how its state
// began (x nil when err failed it).
func (s Span) Restored(service string, in [][]byte, x *hook.Exchange, plain bool, err error) {
	if s.s == nil {
		return
	}
	kv := []attribute.KeyValue{Service.String(service), Count.Int(len(in)), Size.Int(size(in))}
	if x != nil {
		switch {
		case plain:
			kv = append(kv, State.String("plain"))
		case x.Restored():
			kv = append(kv, State.String("restored"), Version.Int64(int64(x.State().Version())))
		default:
			kv = append(kv, State.String("new"))
		}
	}
	s.End(err, kv...)
}

// Committed ends a commit span of service ("": none, as for a relay's
// store): what the reply r carries.
func (s Span) Committed(service string, r *hook.Reply, err error) {
	if s.s == nil {
		return
	}
	var kv []attribute.KeyValue
	if service != "" {
		kv = append(kv, Service.String(service))
	}
	if r != nil {
		kv = append(kv, Count.Int(len(r.SCONEs)), Size.Int(size(r.SCONEs)), Dropped.Int(len(r.Dropped)))
		if v, ok := versionOf(r.SCONEs, service); ok {
			kv = append(kv, Version.Int64(int64(v)))
		}
	}
	s.End(err, kv...)
}

// Tokens returns the attributes of a set of SCONEs: their count, total
// size and, if one is service's, its version.
func Tokens(service string, toks [][]byte) []attribute.KeyValue {
	kv := []attribute.KeyValue{Count.Int(len(toks)), Size.Int(size(toks))}
	if v, ok := versionOf(toks, service); ok {
		kv = append(kv, Version.Int64(int64(v)))
	}
	return kv
}

// OwnerWrite records, on the span of ctx, the write of a record to one
// cluster owner, sent at start, and the owner's answer now: its verdict,
// or the write's error.
func OwnerWrite(ctx context.Context, owner string, start time.Time, verdict string, err error) {
	s := trace.SpanFromContext(ctx)
	if !s.IsRecording() {
		return
	}
	s.AddEvent(OwnerWriteEvent, trace.WithTimestamp(start), trace.WithAttributes(Owner.String(owner)))
	kv := []attribute.KeyValue{Owner.String(owner), Outcome.String(OutcomeOf(err))}
	if err == nil {
		kv = append(kv, Verdict.String(verdict))
	}
	s.AddEvent(OwnerAckEvent, trace.WithAttributes(kv...))
}

// Event adds event name to the span of ctx, if it records.
func Event(ctx context.Context, name string, kv ...attribute.KeyValue) {
	if s := trace.SpanFromContext(ctx); s.IsRecording() {
		s.AddEvent(name, trace.WithAttributes(kv...))
	}
}

func size(toks [][]byte) int {
	n := 0
	for _, t := range toks {
		n += len(t)
	}
	return n
}

// versionOf returns the version of service's SCONE among toks, read from
// its cleartext header.
func versionOf(toks [][]byte, service string) (uint64, bool) {
	for _, t := range toks {
		if v, err := hook.Peek(t); err == nil && string(v.Service) == service {
			return v.Version, true
		}
	}
	return 0, false
}
