package circulate

import (
	"context"

	"go.opentelemetry.io/otel"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/scone-project/scone/internal/hooktrace"
)

// traceQuery records a query of asked other relays, missing of which did
// not answer, on the span of the read that asked.
func traceQuery(ctx context.Context, asked, missing int, found bool, err error) {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return
	}
	outcome := "new"
	switch {
	case err != nil:
		outcome = hooktrace.OutcomeOf(err)
	case found:
		outcome = "found"
	}
	hooktrace.Event(ctx, hooktrace.QueryEvent, hooktrace.Holders.Int(asked),
		hooktrace.Missing.Int(missing), hooktrace.Outcome.String(outcome))
}

// handoffSpan is the span of one hand-off.
type handoffSpan struct{ trace.Span }

// startHandoff starts the span of a hand-off of copies to next's holders.
func (s *Store) startHandoff(ctx context.Context, next *item) (context.Context, handoffSpan) {
	tp := s.cfg.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	ctx, span := tp.Tracer(hooktrace.ScopeName).Start(ctx, hooktrace.Handoff)
	if span.IsRecording() {
		span.SetAttributes(hooktrace.Hop.Int64(int64(next.hop)), hooktrace.Holders.Int(len(next.holders)),
			hooktrace.Count.Int(len(next.scones)))
	}
	return ctx, handoffSpan{span}
}

// end ends the span with the hand-off's outcome (see the handoffs metric).
func (h handoffSpan) end(outcome string) {
	if h.IsRecording() {
		h.SetAttributes(hooktrace.Outcome.String(outcome))
		if outcome == "failed" {
			h.SetStatus(otelcodes.Error, outcome)
		}
	}
	h.End()
}
