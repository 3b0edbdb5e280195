package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/scone-project/scone/cluster/clusterpb"
	"github.com/scone-project/scone/internal/membership"
)

const (
	// maxBatch is the most operations in one Batch call.
	maxBatch = 64
	// maxBatchBytes bounds a Batch call or reply: 64 records of up to
	// 1 MiB of SCONEs each.
	maxBatchBytes = 64 << 20
)

var (
	errLinkClosed = errors.New("cluster: the connection to the member was closed")
)

// peerLink is the node's connection to another member. The operations of
// concurrent requests queue on it; a sender takes all those queued into one
// batch and sends it on a long-lived stream to the member (Peer.Stream),
// without waiting for the replies to the batches before it, and a receiver
// hands the replies, which come back in order, to their operations. Under
// load a batch carries many operations and shares the cost of a message
// among them, and no operation waits for another's round trip.
type peerLink struct {
	conn      *grpc.ClientConn
	client    pb.PeerClient
	queue     chan *pending
	stop      chan struct{}
	closeOnce sync.Once
	timeout   time.Duration
	// view returns this node's view hash.
	view   func() uint64
	lease  time.Duration
	m      *metrics
	mu     sync.Mutex
	agreed agreement // with the member (see agreement)
	cur    *peerStream
	// unary is set once the member answered that it does not serve
	// Stream (a node of an earlier version): batches go in Batch calls,
	// one at a time.
	unary bool
}

// agree records that the member answered a call sent at t with this node's
// view of the members.
func (l *peerLink) agree(t int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.agreed.observe(t, l.lease)
}

// agreement returns the link's run of agreement with the member.
func (l *peerLink) agreement() agreement {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.agreed
}

// pending is one operation waiting for its reply.
type pending struct {
	op *pb.Op
	// view is the view hash the operation was decided in (its owners were
	// chosen in it): it is sent only while this node's view is that one,
	// and the member runs it only if it sees the same (0: the view when it
	// is sent).
	view  uint64
	reply *pb.OpReply
	err   error
	done  chan struct{}
	// deadline is when the operation fails if no reply has come (the
	// link's timeout from its start).
	deadline time.Time
}

// flight is a batch sent, waiting for its reply.
type flight struct {
	batch []*pending
	sent  time.Time
	due   time.Time // the earliest deadline of its operations
	view  uint64    // this node's view hash when it was sent
}

// peerStream is one Peer.Stream to the member, and the batches sent on it
// whose replies have not come, oldest first.
type peerStream struct {
	s        pb.Peer_StreamClient
	cancel   context.CancelFunc
	mu       sync.Mutex
	inflight []*flight
	broken   bool // no more batches go on it
}

// push adds f to the batches in flight on the stream, and reports whether
// it could (the stream is not broken).
func (st *peerStream) push(f *flight) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.broken {
		return false
	}
	st.inflight = append(st.inflight, f)
	return true
}

func newLink(conn *grpc.ClientConn, timeout, lease time.Duration, view func() uint64, m *metrics) *peerLink {
	l := &peerLink{
		conn: conn, client: pb.NewPeerClient(conn),
		queue: make(chan *pending, 4*maxBatch), stop: make(chan struct{}), timeout: timeout,
		view: view, lease: lease, m: m,
	}
	go l.send()
	return l
}

// start queues one operation, decided in view (see pending.view), for the
// member; wait returns its reply. A request starts its operations on every
// member at once and then waits for each in turn, with no goroutine of its
// own per operation.
func (l *peerLink) start(ctx context.Context, op *pb.Op, view uint64) (*pending, error) {
	p := &pending{op: op, view: view, done: make(chan struct{}), deadline: time.Now().Add(l.timeout)}
	select {
	case l.queue <- p:
		return p, nil
	default:
	}
	// The queue is full: wait for room, within the link's timeout.
	t := time.NewTimer(l.timeout)
	defer t.Stop()
	select {
	case l.queue <- p:
		return p, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-t.C:
		return nil, context.DeadlineExceeded
	case <-l.stop:
		return nil, errLinkClosed
	}
}

// wait waits for the reply to an operation start queued, until the link's
// timeout from its start.
func (l *peerLink) wait(ctx context.Context, p *pending) (*pb.OpReply, error) {
	select {
	case <-p.done:
		return p.reply, p.err
	default:
	}
	// One timer, not a context per operation: the operation's reply, or
	// the end of the request, or the timeout, whichever comes first.
	t := time.NewTimer(time.Until(p.deadline))
	defer t.Stop()
	select {
	case <-p.done:
		return p.reply, p.err
	case <-ctx.Done():
		l.kick()
		return nil, ctx.Err()
	case <-t.C:
		l.kick()
		return nil, context.DeadlineExceeded
	case <-l.stop:
		return nil, errLinkClosed
	}
}

// kick breaks the stream if the oldest batch on it is still unanswered at
// the deadline of one of its operations (the link's timeout from when the
// operation was started, not from when the batch left: on a loaded node
// the two differ by the time the operation waited in the queue, and an
// operation that timed out must not leave the stream in use): the member
// or the connection is stuck, and the batches after it would wait as long.
// The operations in flight fail (their writers count them as not
// answered), and the next batch opens a new stream.
func (l *peerLink) kick() {
	l.mu.Lock()
	st := l.cur
	l.mu.Unlock()
	if st == nil {
		return
	}
	st.mu.Lock()
	stale := len(st.inflight) > 0 && !time.Now().Before(st.inflight[0].due)
	st.broken = st.broken || stale
	st.mu.Unlock()
	if !stale {
		return
	}
	l.mu.Lock()
	if l.cur == st {
		l.cur = nil
	}
	l.mu.Unlock()
	st.cancel() // the receiver fails the batches in flight
}

// send sends the queued operations in batches until the link closes.
func (l *peerLink) send() {
	for {
		var batch []*pending
		select {
		case p := <-l.queue:
			batch = append(make([]*pending, 0, 8), p)
		case <-l.stop:
			l.mu.Lock()
			if l.cur != nil {
				l.cur.cancel()
			}
			l.mu.Unlock()
			return
		}
		// Let the requests that are ready to run queue their operations
		// too: under load they join this batch, and share its message.
		runtime.Gosched()
	fill:
		for len(batch) < maxBatch {
			select {
			case p := <-l.queue:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		l.m.peerMsgs.Inc()
		l.m.peerOps.Add(float64(len(batch)))
		l.sendBatch(batch)
	}
}

// sendBatch sends one batch on the stream, opening one if there is none,
// or in a Batch call if the member does not serve Stream. An operation
// decided in another view than this node's now fails, not sent, as if the
// member had refused it (errViewsDiffer): its owners were chosen among
// other members, and a member that answers it sees the members of now
// (a node whose view grew as the others rejoined it would otherwise read
// and write the owners of a view that no longer is).
func (l *peerLink) sendBatch(batch []*pending) {
	view := l.view()
	batch = slices.DeleteFunc(batch, func(p *pending) bool {
		if p.view == 0 || p.view == view {
			return false
		}
		p.err = errViewsDiffer
		close(p.done)
		return true
	})
	if len(batch) == 0 {
		return
	}
	req := &pb.BatchRequest{Ops: make([]*pb.Op, len(batch))}
	due := batch[0].deadline
	for i, p := range batch {
		req.Ops[i] = p.op
		if p.deadline.Before(due) {
			due = p.deadline
		}
	}
	// A stream that breaks between its opening and the push is replaced
	// once; then the batch fails with the cause.
	var err error
	for range 2 {
		l.mu.Lock()
		unary, st := l.unary, l.cur
		l.mu.Unlock()
		f := &flight{batch: batch, sent: time.Now(), due: due, view: view}
		req.View = f.view
		if unary {
			l.call(f, req)
			return
		}
		if st == nil {
			if st, err = l.open(); err != nil {
				break
			}
		}
		if st.push(f) {
			// An error here ends the stream: the receiver fails the
			// batches in flight with the stream's status.
			_ = st.s.Send(req)
			return
		}
		err = errLinkClosed
	}
	l.finish(&flight{batch: batch}, nil, err)
}

// open opens a stream to the member and starts its receiver.
func (l *peerLink) open() (*peerStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	s, err := l.client.Stream(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	st := &peerStream{s: s, cancel: cancel}
	l.mu.Lock()
	l.cur = st
	l.mu.Unlock()
	go l.receive(st)
	return st, nil
}

// receive hands the replies on st to the batches in flight, in order,
// until the stream ends; then it fails the batches still in flight, or
// sends them again in Batch calls if the member does not serve Stream.
func (l *peerLink) receive(st *peerStream) {
	for {
		resp, err := st.s.Recv()
		st.mu.Lock()
		if err == nil && len(st.inflight) == 0 {
			err = errors.New("cluster: a member answered a batch not sent")
		}
		if err != nil {
			st.broken = true
			left := st.inflight
			st.inflight = nil
			st.mu.Unlock()
			st.cancel()
			l.mu.Lock()
			if l.cur == st {
				l.cur = nil
			}
			unary := status.Code(err) == codes.Unimplemented
			l.unary = l.unary || unary
			l.mu.Unlock()
			for _, f := range left {
				if unary {
					l.call(f, &pb.BatchRequest{Ops: opsOf(f.batch), View: f.view})
				} else {
					l.finish(f, nil, err)
				}
			}
			return
		}
		f := st.inflight[0]
		st.inflight = st.inflight[1:]
		st.mu.Unlock()
		l.finish(f, resp, nil)
	}
}

func opsOf(batch []*pending) []*pb.Op {
	ops := make([]*pb.Op, len(batch))
	for i, p := range batch {
		ops[i] = p.op
	}
	return ops
}

// call sends the batch of f in one Batch call, and waits for its reply.
func (l *peerLink) call(f *flight, req *pb.BatchRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	defer cancel()
	resp, err := l.client.Batch(ctx, req)
	l.finish(f, resp, err)
}

// finish hands the member's reply to a batch (or err) to its operations.
func (l *peerLink) finish(f *flight, resp *pb.BatchReply, err error) {
	if err == nil && resp.GetView() == f.view && l.view() == f.view {
		l.agree(f.sent.UnixNano())
	}
	if err == nil && resp.GetRefused() {
		err = errViewsDiffer
	}
	if err == nil && len(resp.GetReplies()) != len(f.batch) {
		err = fmt.Errorf("cluster: a member answered %d of %d operations", len(resp.GetReplies()), len(f.batch))
	}
	for i, p := range f.batch {
		if err != nil {
			p.err = err
		} else {
			p.reply = resp.GetReplies()[i]
		}
		close(p.done)
	}
}

// Close stops the link's sender and closes its connection.
func (l *peerLink) Close() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		l.conn.Close()
	})
	return nil
}

// link returns the link to a live member, connecting on first use.
func (n *Node) link(name string) (*peerLink, error) { return n.members.Peer(name) }

// call runs one operation, decided in view (see pending.view), on another
// member.
func (n *Node) call(ctx context.Context, member string, op *pb.Op, view uint64) (*pb.OpReply, error) {
	return n.startOn(ctx, member, op, view).wait(ctx)
}

// started is an operation started on another member (startOn): its reply
// is to wait for.
type started struct {
	l   *peerLink
	p   *pending
	err error // the operation could not start
}

// startOn starts one operation, decided in view (see pending.view), on
// another member.
func (n *Node) startOn(ctx context.Context, member string, op *pb.Op, view uint64) started {
	l, err := n.link(member)
	if err != nil {
		return started{err: err}
	}
	p, err := l.start(ctx, op, view)
	return started{l: l, p: p, err: err}
}

// wait returns the member's reply to the operation.
func (s started) wait(ctx context.Context) (*pb.OpReply, error) {
	if s.err != nil {
		return nil, s.err
	}
	return s.l.wait(ctx, s.p)
}

func fetchOp(key string) *pb.Op { return &pb.Op{Op: &pb.Op_Fetch{Fetch: &pb.FetchRequest{Key: key}}} }

func storeRecordOp(rec *Record, base uint64, repair bool) *pb.Op {
	return &pb.Op{Op: &pb.Op_Store{Store: &pb.StoreRequest{Record: toPB(rec), Base: base, Repair: repair}}}
}

// fetched is the record a member's reply to a fetch holds (nil if none).
func fetched(r *pb.OpReply, err error) (*Record, error) {
	if err != nil {
		return nil, err
	}
	f := r.GetFetch()
	if !f.GetFound() {
		return nil, nil
	}
	return fromPB(f.GetRecord()), nil
}

// storedBy is the verdict of a member's reply to a store, and the version it
// holds afterwards.
func storedBy(r *pb.OpReply, err error) (Verdict, uint64, error) {
	if err != nil {
		return 0, 0, err
	}
	return Verdict(r.GetStore().GetVerdict()), r.GetStore().GetRv(), nil
}

// storeOn writes a record on one member (locally for this node), in view
// (see pending.view), and returns the verdict and the version the member
// holds afterwards.
func (n *Node) storeOn(ctx context.Context, member string, rec *Record, base uint64, repair bool, view uint64) (Verdict, uint64, error) {
	if member == n.cfg.Name {
		v, rv := n.store.put(rec, base, repair)
		return v, rv, nil
	}
	return storedBy(n.call(ctx, member, storeRecordOp(rec, base, repair), view))
}

// undoOn takes back a write of rec on one member (locally for this node),
// and reports whether that member can never hold it now (undoResult.settles).
func (n *Node) undoOn(member string, rec *Record) bool {
	if member == n.cfg.Name {
		return n.store.undo(rec.Key, rec.RV, rec.Stamp, n.cfg.Now()).settles(rec.RV)
	}
	op := &pb.Op{Op: &pb.Op_Undo{Undo: &pb.UndoRequest{Key: rec.Key, Rv: rec.RV, Stamp: rec.Stamp}}}
	r, err := n.call(context.Background(), member, op, 0)
	if err != nil {
		return false
	}
	u := r.GetUndo()
	if u.GetUndone() {
		n.m.undos.Inc()
	}
	return undoResult{undone: u.GetUndone(), spread: u.GetSpread(), fenced: u.GetFenced(), held: u.GetRv()}.settles(rec.RV)
}

func toPB(r *Record) *pb.Record {
	return &pb.Record{Key: r.Key, Rv: r.RV, Stamp: r.Stamp, Scones: r.SCONEs, Copies: uint32(r.Copies)}
}

func fromPB(r *pb.Record) *Record {
	return &Record{Key: r.GetKey(), RV: r.GetRv(), Stamp: r.GetStamp(), SCONEs: r.GetScones(), Copies: int(r.GetCopies())}
}

// peerServer serves the Peer protocol from the node's store.
type peerServer struct {
	pb.UnimplementedPeerServer
	n *Node
}

// errViewsDiffer is a batch a member refused, running none of its
// operations, because it sees other members than this node (see
// membership.ErrViewsDiffer).
var errViewsDiffer = membership.ErrViewsDiffer

// Batch runs the operations in order, unless the sender sees other
// members than this node (see errViewsDiffer).
func (p peerServer) Batch(_ context.Context, req *pb.BatchRequest) (*pb.BatchReply, error) {
	return p.run(req)
}

// Stream runs the batches the member sends, in order, as Batch does, and
// answers each in turn.
func (p peerServer) Stream(s pb.Peer_StreamServer) error {
	for {
		req, err := s.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		reply, err := p.run(req)
		if err != nil {
			return err
		}
		if err := s.Send(reply); err != nil {
			return err
		}
	}
}

// run runs a batch of operations in order, unless the sender sees other
// members than this node (see errViewsDiffer).
func (p peerServer) run(req *pb.BatchRequest) (*pb.BatchReply, error) {
	st := p.n.store
	view := p.n.members.View()
	own := view.Hash
	if view.Refuses(req.GetView()) {
		return &pb.BatchReply{View: own, Refused: true}, nil
	}
	out := &pb.BatchReply{Replies: make([]*pb.OpReply, len(req.GetOps())), View: own}
	replies := make([]pb.OpReply, len(req.GetOps())) // one allocation for the batch
	for i, op := range req.GetOps() {
		r := &replies[i]
		switch x := op.GetOp().(type) {
		case *pb.Op_Fetch:
			f := &pb.FetchReply{}
			st.distrust(x.Fetch.GetKey()) // another node serves the client
			if rec := st.get(x.Fetch.GetKey()); rec != nil {
				f.Found, f.Record = true, toPB(rec)
			}
			r.Reply = &pb.OpReply_Fetch{Fetch: f}
		case *pb.Op_Store:
			s := x.Store
			if s.GetRecord() == nil {
				return nil, status.Errorf(codes.InvalidArgument, "operation %d stores no record", i)
			}
			rec := fromPB(s.GetRecord())
			// A write within the lease of an owner that left is refused:
			// that owner may still serve it.
			settling := !s.GetRepair() && p.n.settling(rec.Key, max(1, rec.Copies))
			v, rv := serveStore(st, rec, s.GetBase(), s.GetRepair(), settling)
			r.Reply = &pb.OpReply_Store{Store: &pb.StoreReply{Verdict: pb.StoreReply_Verdict(v), Rv: rv}}
		case *pb.Op_Undo:
			u := x.Undo
			d := st.undo(u.GetKey(), u.GetRv(), u.GetStamp(), p.n.cfg.Now())
			r.Reply = &pb.OpReply_Undo{Undo: &pb.UndoReply{Undone: d.undone, Spread: d.spread, Fenced: d.fenced, Rv: d.held}}
		default:
			return nil, status.Errorf(codes.InvalidArgument, "operation %d is of an unknown kind", i)
		}
		out.Replies[i] = r
	}
	return out, nil
}
