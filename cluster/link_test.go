package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/scone-project/scone/cluster/clusterpb"
)

// batchOnly serves the Peer protocol without Stream, as a node of an
// earlier version does.
type batchOnly struct {
	pb.UnimplementedPeerServer
	p peerServer
}

func (b batchOnly) Batch(ctx context.Context, req *pb.BatchRequest) (*pb.BatchReply, error) {
	return b.p.Batch(ctx, req)
}

// stuck serves Stream and never answers, as a member whose process is
// paused does; opened receives each stream it accepts.
type stuck struct {
	pb.UnimplementedPeerServer
	opened chan struct{}
}

func (s stuck) Stream(st pb.Peer_StreamServer) error {
	s.opened <- struct{}{}
	<-st.Context().Done()
	return st.Context().Err()
}

// serveLink serves srv on loopback and returns a link to it.
func serveLink(t *testing.T, srv pb.PeerServer, timeout time.Duration) *peerLink {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterPeerServer(s, srv)
	go s.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	l := newLink(conn, timeout, 0, func() uint64 { return 0 }, newMetrics(prometheus.NewRegistry(), func() float64 { return 0 }))
	t.Cleanup(func() {
		l.Close()
		s.Stop()
	})
	return l
}

// do runs one operation, decided in view (see pending.view), on the
// member, within the link's timeout.
func (l *peerLink) do(ctx context.Context, op *pb.Op, view uint64) (*pb.OpReply, error) {
	p, err := l.start(ctx, op, view)
	if err != nil {
		return nil, err
	}
	return l.wait(ctx, p)
}

// TestPeerLink runs concurrent operations on a link, over a stream to a
// current node and over Batch calls to a node that does not serve Stream:
// each operation gets its own reply.
func TestPeerLink(t *testing.T) {
	for _, tc := range []struct {
		name  string
		srv   func(peerServer) pb.PeerServer
		unary bool
	}{
		{"stream", func(p peerServer) pb.PeerServer { return p }, false},
		{"batch-only", func(p peerServer) pb.PeerServer { return batchOnly{p: p} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := serveLink(t, tc.srv(peerServer{n: offlineNode()}), 5*time.Second)
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for i := range 64 {
				wg.Go(func() {
					key := fmt.Sprint("k", i)
					if _, err := l.do(context.Background(), storeOp(key, uint64(i+1), 0, false), 0); err != nil {
						errs <- err
						return
					}
					r, err := l.do(context.Background(), &pb.Op{Op: &pb.Op_Fetch{Fetch: &pb.FetchRequest{Key: key}}}, 0)
					if err != nil {
						errs <- err
						return
					}
					if got := r.GetFetch().GetRecord(); got.GetKey() != key || got.GetRv() != uint64(i+1) {
						errs <- fmt.Errorf("fetch of %s: got %s rv %d", key, got.GetKey(), got.GetRv())
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.unary != tc.unary {
				t.Errorf("link uses Batch: %v, want %v", l.unary, tc.unary)
			}
		})
	}
}

// TestPeerLinkStuck: an operation on a stream whose member does not
// answer fails after the link's timeout, and the link breaks that stream:
// the next operation goes on a new one.
func TestPeerLinkStuck(t *testing.T) {
	srv := stuck{opened: make(chan struct{}, 2)}
	l := serveLink(t, srv, 100*time.Millisecond)
	fetch := &pb.Op{Op: &pb.Op_Fetch{Fetch: &pb.FetchRequest{Key: "a"}}}
	if _, err := l.do(context.Background(), fetch, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("an operation the member never answers: %v, want DeadlineExceeded", err)
	}
	<-srv.opened
	if _, err := l.do(context.Background(), fetch, 0); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the next operation: %v, want DeadlineExceeded", err)
	}
	select {
	case <-srv.opened:
	case <-time.After(5 * time.Second):
		t.Fatal("the link kept the stuck stream")
	}
}

// TestLinkRefusesAnotherView: an operation decided in another view than
// the node's now (its owners were chosen among other members) fails as
// refused, errViewsDiffer, and is never sent.
func TestLinkRefusesAnotherView(t *testing.T) {
	opened := make(chan struct{}, 1)
	l := serveLink(t, stuck{opened: opened}, 5*time.Second) // the node's view: 0
	fetch := &pb.Op{Op: &pb.Op_Fetch{Fetch: &pb.FetchRequest{Key: "k"}}}
	if _, err := l.do(context.Background(), fetch, 42); !errors.Is(err, errViewsDiffer) {
		t.Fatalf("an operation of another view: %v, want errViewsDiffer", err)
	}
	select {
	case <-opened:
		t.Fatal("the operation of another view was sent")
	default:
	}
}
