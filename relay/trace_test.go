package relay_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/relay"
)

// recorder is the SDK's in-memory span recorder, telling each span's end.
type recorder struct {
	*tracetest.SpanRecorder
	ended chan struct{}
}

func newRecorder() *recorder {
	return &recorder{SpanRecorder: tracetest.NewSpanRecorder(), ended: make(chan struct{}, 1024)}
}

func (r *recorder) OnEnd(s sdktrace.ReadOnlySpan) {
	r.SpanRecorder.OnEnd(s)
	r.ended <- struct{}{}
}

// trace waits until the trace of id has n ended spans, and returns them.
func (r *recorder) trace(t *testing.T, id trace.TraceID, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		var spans []sdktrace.ReadOnlySpan
		for _, s := range r.Ended() {
			if s.SpanContext().TraceID() == id {
				spans = append(spans, s)
			}
		}
		if len(spans) >= n {
			return spans
		}
		select {
		case <-r.ended:
		case <-timeout:
			t.Fatalf("the trace has %d ended spans after 10 s, want %d:\n%s", len(spans), n, renderTree(spans, false))
		}
	}
}

// renderTree draws spans as a tree, children in the order they started,
// with their kind and SCONE attributes (the sizes as N unless sizes).
func renderTree(spans []sdktrace.ReadOnlySpan, sizes bool) string {
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	ids := map[trace.SpanID]bool{}
	for _, s := range spans {
		ids[s.SpanContext().SpanID()] = true
	}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if p := s.Parent().SpanID(); ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	byStart := func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) }
	var b strings.Builder
	var draw func(s sdktrace.ReadOnlySpan, depth int)
	draw = func(s sdktrace.ReadOnlySpan, depth int) {
		fmt.Fprintf(&b, "%s%s [%s]", strings.Repeat("  ", depth), s.Name(), s.SpanKind())
		for _, kv := range s.Attributes() {
			k := string(kv.Key)
			if !strings.HasPrefix(k, "scone.") && !(strings.HasPrefix(s.Name(), "scone.") && strings.HasPrefix(k, "rpc.")) {
				continue
			}
			v := kv.Value.Emit()
			if kv.Key == "scone.size" && !sizes {
				v = "N"
			}
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
		b.WriteByte('\n')
		cs := children[s.SpanContext().SpanID()]
		slices.SortFunc(cs, byStart)
		for _, c := range cs {
			draw(c, depth+1)
		}
	}
	slices.SortFunc(roots, byStart)
	for _, r := range roots {
		draw(r, 0)
	}
	return b.String()
}

// wantTrace is the span tree of a second AddItem through the relay: the
// client's call, the relay's span with its store read and write, and
// under it the gateway, the cart and the inventory (which the gateway and
// the cart each call), each restoring and committing its state.
const wantTrace = `bookstore.v1.Gateway/AddItem [client]
  scone.relay [server] rpc.system=grpc rpc.service=bookstore.v1.Gateway rpc.method=AddItem rpc.grpc.status_code=0
    scone.relay.store.get [internal] scone.count=3 scone.size=N scone.lookup=hit scone.outcome=ok
    bookstore.v1.Gateway/AddItem [server]
      scone.restore [internal] scone.service=bookstore.v1.Gateway scone.count=3 scone.size=N scone.state=restored scone.version=1 scone.outcome=ok
      bookstore.v1.Cart/Add [client]
        bookstore.v1.Cart/Add [server]
          scone.restore [internal] scone.service=bookstore.v1.Cart scone.count=2 scone.size=N scone.state=restored scone.version=1 scone.outcome=ok
          bookstore.v1.Inventory/Reserve [client]
            bookstore.v1.Inventory/Reserve [server]
              scone.restore [internal] scone.service=bookstore.v1.Inventory scone.count=1 scone.size=N scone.state=restored scone.version=2 scone.outcome=ok
              scone.commit [internal] scone.service=bookstore.v1.Inventory scone.count=1 scone.size=N scone.dropped=0 scone.version=3 scone.outcome=ok
          scone.commit [internal] scone.service=bookstore.v1.Cart scone.count=2 scone.size=N scone.dropped=0 scone.version=2 scone.outcome=ok
      bookstore.v1.Inventory/Held [client]
        bookstore.v1.Inventory/Held [server]
          scone.restore [internal] scone.service=bookstore.v1.Inventory scone.count=1 scone.size=N scone.state=restored scone.version=3 scone.outcome=ok
          scone.commit [internal] scone.service=bookstore.v1.Inventory scone.count=1 scone.size=N scone.dropped=0 scone.version=4 scone.outcome=ok
      scone.commit [internal] scone.service=bookstore.v1.Gateway scone.count=3 scone.size=N scone.dropped=0 scone.version=2 scone.outcome=ok
    scone.relay.store.apply [internal] scone.count=3 scone.size=N scone.dropped=0 scone.outcome=ok
`

// TestTraceThroughRelay records the spans of one bookstore call from a
// client through the relay to the gateway, the cart and the inventory,
// and checks the tree (each span's parent, name and attributes), and that
// no span, attribute or event holds a SCONE (its bytes or their base64
// text) or the state in it.
func TestTraceThroughRelay(t *testing.T) {
	t.Parallel()
	rec := newRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })

	sealer := newSealer(t, newRing(t))
	d, err := shop.Deploy(sealer, 1, shop.WithTracerProvider(tp))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	store := relay.NewMemoryStore(relay.DefaultMemoryConfig())
	cfg := relayConfig(d.Addrs(shop.RoleGateway), store)
	cfg.TracerProvider = tp
	_, addr := startRelay(t, cfg)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp),
			otelgrpc.WithPropagators(propagation.TraceContext{}))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gw := pb.NewGatewayClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "scone-client", "alice")

	// The first call starts the session; the second is the one traced.
	if _, err := gw.AddItem(ctx, &pb.AddItemRequest{Isbn: dune, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	const method = "/bookstore.v1.Gateway/AddItem"
	before, err := store.Get(context.Background(), "header:alice", method)
	if err != nil {
		t.Fatal(err)
	}
	ctx, root := tp.Tracer("test").Start(ctx, "test")
	if _, err := gw.AddItem(ctx, &pb.AddItemRequest{Isbn: neuromancer, Quantity: 2}); err != nil {
		t.Fatal(err)
	}
	root.End()
	after, err := store.Get(context.Background(), "header:alice", method)
	if err != nil {
		t.Fatal(err)
	}

	spans := rec.trace(t, root.SpanContext().TraceID(), 20)
	spans = slices.DeleteFunc(spans, func(s sdktrace.ReadOnlySpan) bool { return s.Name() == "test" })
	if got := renderTree(spans, false); got != wantTrace {
		t.Errorf("span tree:\n%s\nwant:\n%s", got, wantTrace)
	}
	t.Logf("span tree:\n%s", renderTree(spans, true))

	// Nothing secret in the trace: no SCONE of the session, in bytes or
	// base64, and no state opened from them.
	var secrets [][]byte
	for _, tok := range slices.Concat(before, after) {
		secrets = append(secrets, tok,
			[]byte(base64.StdEncoding.EncodeToString(tok)), []byte(base64.RawStdEncoding.EncodeToString(tok)),
			[]byte(base64.URLEncoding.EncodeToString(tok)), []byte(base64.RawURLEncoding.EncodeToString(tok)))
		v, err := hook.Peek(tok)
		if err != nil {
			t.Fatal(err)
		}
		var sc scone.SCONE
		if _, err := hook.Open(sealer, context.Background(), &sc, tok, scone.Expect{Service: string(v.Service)}); err != nil {
			t.Fatalf("opening a SCONE of %s: %v", v.Service, err)
		}
		if len(sc.Data) >= 4 {
			secrets = append(secrets, bytes.Clone(sc.Data))
		}
	}
	if len(secrets) < 6*5 {
		t.Fatalf("%d secrets to look for, want the SCONEs of three services before and after, and their states", len(secrets))
	}
	for _, s := range spans {
		texts := []string{s.Name(), s.Status().Description}
		kvs := slices.Clone(s.Attributes())
		for _, e := range s.Events() {
			texts = append(texts, e.Name)
			kvs = append(kvs, e.Attributes...)
		}
		for _, kv := range kvs {
			if kv.Value.Type() == attribute.STRING {
				texts = append(texts, kv.Value.AsString())
			}
			if kv.Value.Type() == attribute.STRINGSLICE {
				texts = append(texts, kv.Value.AsStringSlice()...)
			}
		}
		for _, text := range texts {
			for _, secret := range secrets {
				if bytes.Contains([]byte(text), secret) {
					t.Errorf("span %s holds a SCONE or its state: %q", s.Name(), text)
				}
			}
		}
	}
}
