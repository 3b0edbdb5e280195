package sconegrpc_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/sconegrpc"
)

// rmw is a service whose Lookup does a read-modify-write of size bytes of
// session state, the work BenchmarkUnary measures.
type rmw struct {
	pb.UnimplementedInventoryServer
	size int
	echo bool // send the request's unknown fields back, and nothing else
}

var benchBook = &pb.Book{Isbn: "9780441013593", Title: "Dune", PriceCents: 1099}

func (r rmw) Lookup(ctx context.Context, req *pb.LookupRequest) (*pb.Book, error) {
	if r.echo {
		reply := &pb.Book{Isbn: benchBook.Isbn, Title: benchBook.Title, PriceCents: benchBook.PriceCents}
		reply.ProtoReflect().SetUnknown(req.ProtoReflect().GetUnknown())
		return reply, nil
	}
	if st, ok := scone.FromContext(ctx); ok && r.size > 0 {
		st.Update(func(d []byte) []byte {
			if len(d) != r.size {
				d = make([]byte, r.size) // a new session
			}
			d[0]++
			return d
		})
	}
	return benchBook, nil
}

type sessionKey struct{}

// BenchmarkUnary measures a unary call over loopback TCP from 64 concurrent
// callers on one ClientConn, each caller its own session:
//
//	state=none           plain gRPC: no interceptors, no state (the ceiling)
//	state=256            the SCONE hook on both sides, 256 B of state read, changed and written per call
//	state=256/metrics    the same with the server hook's metrics (WithMetrics)
//	state=256/tracing    the same, traced: otelgrpc on both sides and the hook's spans, on an SDK tracer provider that samples every call
//	state=4096           the same as state=256 with 4 KiB
//	bytes=256, bytes=4096  plain gRPC carrying the bytes state=256 and state=4096 carry (the frame,
//	                     as an unknown field of the request, echoed in the reply), without the hook
//	                     or its cryptography: the limit the hook can reach
//
// state=256 is the hook without a tracer provider: no call span in the
// context, so the hook records no span either.
func BenchmarkUnary(b *testing.B) {
	for _, bc := range []struct {
		name    string
		size    int
		metrics bool
		tracing bool
	}{
		{"state=none", 0, false, false},
		{"state=256", 256, false, false},
		{"state=256/metrics", 256, true, false},
		{"state=256/tracing", 256, false, true},
		{"state=4096", 4096, false, false},
		{"bytes=256", 256, false, false},
		{"bytes=4096", 4096, false, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if strings.HasPrefix(bc.name, "bytes=") {
				benchBytes(b, frameSize(b, bc.size))
				return
			}
			var sopts []grpc.ServerOption
			var dopts []grpc.DialOption
			if bc.size > 0 {
				var opts []sconegrpc.ServerOption
				if bc.metrics {
					opts = append(opts, sconegrpc.WithMetrics(prometheus.NewRegistry()))
				}
				sopts = sconegrpc.ServerOptions(newSealer(b), opts...)
				holders := func(ctx context.Context) scone.Holder { return ctx.Value(sessionKey{}).(scone.Holder) }
				dopts = sconegrpc.DialOptions(sconegrpc.WithHolderFromContext(holders))
			}
			if bc.tracing {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				defer tp.Shutdown(context.Background())
				prop := otelgrpc.WithPropagators(propagation.TraceContext{})
				sopts = append(sopts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(tp), prop)))
				dopts = append(dopts, grpc.WithStatsHandler(otelgrpc.NewClientHandler(otelgrpc.WithTracerProvider(tp), prop)))
			}
			benchUnary(b, bc.size, sopts, dopts)
		})
	}
}

// frameSize returns the length of the frame a reply carries for size bytes
// of state, after a few calls of one session.
func frameSize(b *testing.B, size int) int {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(sconegrpc.ServerOptions(newSealer(b))...)
	pb.RegisterInventoryServer(srv, rmw{size: size})
	go srv.Serve(lis)
	defer srv.Stop()
	d := scone.NewDict()
	conn, err := grpc.NewClient(lis.Addr().String(), append(sconegrpc.DialOptions(sconegrpc.WithHolder(d)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	const method = "/bookstore.v1.Inventory/Lookup"
	for range 3 {
		if _, err := pb.NewInventoryClient(conn).Lookup(context.Background(), &pb.LookupRequest{Isbn: benchBook.Isbn}); err != nil {
			b.Fatal(err)
		}
	}
	toks := d.Match(nil, method)
	if len(toks) != 1 {
		b.Fatalf("the holder keeps %d SCONEs, want 1", len(toks))
	}
	return protowire.SizeBytes(protowire.SizeTag(1) + protowire.SizeBytes(len(toks[0])))
}

// benchBytes is benchUnary without the hook, each request carrying n bytes
// in an unknown field (as the frame field) that the server sends back.
func benchBytes(b *testing.B, n int) {
	field := protowire.AppendTag(nil, protowire.MaxValidNumber, protowire.BytesType)
	field = protowire.AppendBytes(field, make([]byte, n-protowire.SizeVarint(uint64(n))))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterInventoryServer(srv, rmw{echo: true})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewInventoryClient(conn)
	var failed atomic.Int64
	b.SetParallelism(32)
	b.ReportAllocs()
	b.RunParallel(func(p *testing.PB) {
		req := &pb.LookupRequest{Isbn: benchBook.Isbn}
		req.ProtoReflect().SetUnknown(field)
		for p.Next() {
			if reply, err := c.Lookup(context.Background(), req); err != nil || len(reply.ProtoReflect().GetUnknown()) != len(field) {
				failed.Add(1)
			}
		}
	})
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d calls failed", n)
	}
}

// benchUnary serves rmw{size} with sopts and calls it from 64 goroutines,
// each its own session, over one connection made with dopts.
func benchUnary(b *testing.B, size int, sopts []grpc.ServerOption, dopts []grpc.DialOption) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(sopts...)
	pb.RegisterInventoryServer(srv, rmw{size: size})
	go srv.Serve(lis)
	defer srv.Stop()
	conn, err := grpc.NewClient(lis.Addr().String(), append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewInventoryClient(conn)
	req := &pb.LookupRequest{Isbn: benchBook.Isbn}
	var failed atomic.Int64
	b.SetParallelism(32) // 64 callers on 2 CPUs
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.WithValue(context.Background(), sessionKey{}, scone.Holder(scone.NewDict()))
		for pb.Next() {
			if _, err := c.Lookup(ctx, req); err != nil {
				failed.Add(1)
			}
		}
	})
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d calls failed", n)
	}
}

// BenchmarkCarrier compares the two carriers in one run, 64 callers with a
// read-modify-write of the state per call, as BenchmarkUnary:
//
//	carrier=body      the frame in the message body (the default)
//	carrier=metadata  the frame in "scone-bin" metadata both ways
func BenchmarkCarrier(b *testing.B) {
	for _, carrier := range []string{"body", "metadata"} {
		for _, size := range []int{256, 4096} {
			b.Run(fmt.Sprintf("carrier=%s/state=%d", carrier, size), func(b *testing.B) {
				opts := []sconegrpc.ClientOption{sconegrpc.WithHolderFromContext(func(ctx context.Context) scone.Holder {
					return ctx.Value(sessionKey{}).(scone.Holder)
				})}
				if carrier == "metadata" {
					opts = append(opts, sconegrpc.WithMetadataCarrier())
				}
				benchUnary(b, size, sconegrpc.ServerOptions(newSealer(b)), sconegrpc.DialOptions(opts...))
			})
		}
	}
}
