package sconegrpc_test

import (
	"bytes"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/grpcframe"
	"github.com/scone-project/scone/sconegrpc"
)

// retryPolicy is a gRPC service config that re-sends the gateway's calls
// that fail Unavailable, as a client in client mode would configure.
const retryPolicy = `{"methodConfig": [{
	"name": [{"service": "bookstore.v1.Gateway"}],
	"retryPolicy": {"maxAttempts": 3, "initialBackoff": "0.01s", "maxBackoff": "0.05s", "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}
}]}`

// attempts records the SCONEs each attempt of a call brought to a server,
// from its message body (the codec sees it before the hook) or its
// metadata (an interceptor outside the hook).
type attempts struct {
	mu   sync.Mutex
	seen [][][]byte
}

func (a *attempts) add(f grpcframe.Frame) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(a.seen, f.SCONEs)
}

// recordingCodec is the hook's codec, recording the frame in each request
// body before the hook takes it off.
type recordingCodec struct {
	encoding.CodecV2
	a *attempts
}

func (c recordingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if fr, _, ok := grpcframe.SplitBody(data.Materialize()); ok {
		f, err := grpcframe.ParseFrame(fr)
		if err != nil {
			return err
		}
		c.a.add(f)
	}
	return c.CodecV2.Unmarshal(data, v)
}

// TestClientRetryCarriesSCONE: in client mode, gRPC's retry policy re-sends
// a call below the interceptors, so the client hook runs once per call,
// and the re-sent attempt carries the same SCONEs as the first: gRPC
// replays the request message it encoded (the body carrier) and the
// call's metadata (the metadata carrier). The server fails the first
// attempt of every call with Unavailable before the hook runs, as a
// replica gone mid-call would; every call succeeds on its second attempt,
// and the session counts each change once.
func TestClientRetryCarriesSCONE(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []sconegrpc.ClientOption
	}{
		{"body", nil},
		{"metadata", []sconegrpc.ClientOption{sconegrpc.WithMetadataCarrier()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sealer := newSealer(t)
			d := deploy(t, sealer, 1)
			seen := &attempts{}
			failFirst := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				md, _ := metadata.FromIncomingContext(ctx)
				if v := md.Get(grpcframe.MetadataKey); len(v) > 0 {
					f, err := grpcframe.ParseFrame([]byte(v[0]))
					if err != nil {
						return nil, err
					}
					seen.add(f)
				}
				if len(md.Get("grpc-previous-rpc-attempts")) == 0 {
					return nil, status.Error(codes.Unavailable, "the first attempt is lost")
				}
				return h(ctx, req)
			}
			srv := grpc.NewServer(append(append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(failFirst)}, sconegrpc.ServerOptions(sealer)...),
				grpc.ForceServerCodecV2(recordingCodec{sconegrpc.Codec(), seen}))...)
			b := d.Backends()
			pb.RegisterGatewayServer(srv, &shop.Gateway{Cart: b.Cart, Inventory: b.Inventory})
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			go srv.Serve(lis)
			defer srv.Stop()

			var calls atomic.Int32
			count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				calls.Add(1)
				return invoker(ctx, method, req, reply, cc, opts...)
			}
			dict := scone.NewDict()
			dopts := append([]grpc.DialOption{
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultServiceConfig(retryPolicy),
				grpc.WithChainUnaryInterceptor(count),
			}, sconegrpc.DialOptions(append([]sconegrpc.ClientOption{sconegrpc.WithHolder(dict)}, tc.opts...)...)...)
			conn, err := grpc.NewClient(lis.Addr().String(), dopts...)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			gw := pb.NewGatewayClient(conn)

			const n = 3
			for i := range n {
				v, err := gw.AddItem(context.Background(), &pb.AddItemRequest{Isbn: dune, Quantity: 1})
				if err != nil {
					t.Fatalf("call %d: %v", i+1, err)
				}
				if v.Operations != uint64(i+1) || v.Lines[0].Quantity != int32(i+1) {
					t.Fatalf("after %d calls: %d operations, %d copies", i+1, v.Operations, v.Lines[0].Quantity)
				}
			}
			if c := calls.Load(); c != n {
				t.Errorf("the client interceptors ran %d times for %d calls", c, n)
			}
			seen.mu.Lock()
			defer seen.mu.Unlock()
			if len(seen.seen) != 2*n {
				t.Fatalf("%d attempts brought a frame, want %d (two per call)", len(seen.seen), 2*n)
			}
			for i := 0; i < len(seen.seen); i += 2 {
				first, again := seen.seen[i], seen.seen[i+1]
				if !bytes.Equal(bytes.Join(first, nil), bytes.Join(again, nil)) {
					t.Errorf("call %d: the first attempt brought %d SCONEs, the re-sent one %d, not the same", i/2+1, len(first), len(again))
				}
				// The first call has no SCONE yet; every later one carries
				// what the call before it sealed.
				if i > 0 && (len(first) == 0 || bytes.Equal(bytes.Join(first, nil), bytes.Join(seen.seen[i-1], nil))) {
					t.Errorf("call %d brought %d SCONEs, those of the call before or none", i/2+1, len(first))
				}
			}
		})
	}
}
