package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/cluster/clusterpb"
	"github.com/scone-project/scone/internal/hooktrace"
	"github.com/scone-project/scone/internal/membership"
)

// Node is one member of a cluster that keeps SCONEs: it holds its share of
// the client records, serves them to the other nodes, and serves clients'
// requests through its interceptors.
type Node struct {
	cfg   Config
	store *store
	peer  *grpc.Server
	reg   *prometheus.Registry
	m     *metrics

	members *membership.Group[*peerLink] // the live members and the links to them
	// group is members, for triggerRepair, which the group calls before
	// Start returns.
	group atomic.Pointer[membership.Group[*peerLink]]

	repairNow chan struct{}
	// changes counts the membership changes; settled is the count as of
	// the last repair pass that left nothing to do.
	changes, settled atomic.Uint64
	// changed is the view as of the last change, and when it came (by the
	// monotonic clock): reads consult every member for the settle window
	// after it (see readFrom).
	changedMu sync.Mutex
	changed   viewChange
	stop      chan struct{}
	done      sync.WaitGroup
}

// New starts a node: it begins gossiping and joins cfg.Seeds. Serve its Peer
// service with ServePeer.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:       cfg,
		store:     newStore(),
		reg:       prometheus.NewRegistry(),
		repairNow: make(chan struct{}, 1),
		stop:      make(chan struct{}),
	}
	n.m = newMetrics(n.reg, func() float64 { return float64(n.store.len()) })
	n.peer = grpc.NewServer(append(membership.ServerOptions(cfg.PeerTLS), grpc.MaxRecvMsgSize(maxBatchBytes),
		grpc.InitialWindowSize(peerWindow), grpc.InitialConnWindowSize(peerWindow))...)
	pb.RegisterPeerServer(n.peer, peerServer{n: n})
	mcfg := cfg.membership()
	mcfg.DialOptions = []grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxBatchBytes), grpc.MaxCallSendMsgSize(maxBatchBytes)),
		grpc.WithInitialWindowSize(peerWindow), grpc.WithInitialConnWindowSize(peerWindow),
	}
	mcfg.OnChange = n.triggerRepair
	mcfg.Metrics = membership.Metrics{Members: n.m.members, Lost: n.m.lost, Rejoins: n.m.rejoins}
	g, err := membership.Start(mcfg, func(c *grpc.ClientConn) *peerLink {
		return newLink(c, cfg.Timeout, cfg.Lease, func() uint64 { return n.members.View().Hash }, n.m)
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n.members = g
	n.group.Store(g)
	n.done.Add(1)
	go n.repairLoop()
	return n, nil
}

// peerWindow is the HTTP/2 flow-control window of the peer connections,
// set rather than estimated: gRPC's estimate (BDP) sends a ping, and its
// answer, about every round trip on a busy connection, two more frames
// for each batch of operations on a peer link. 4 MiB covers a round trip
// of a LAN at several GB/s; a batch larger than it flows in parts.
const peerWindow = 4 << 20

// ServePeer serves the Peer service (the other nodes' reads and writes) on
// lis until Close.
func (n *Node) ServePeer(lis net.Listener) error { return n.peer.Serve(lis) }

// SetGossipKeys replaces the gossip keys while the node runs (see
// Config.GossipKeys): keys[0] encrypts from now on, every key decrypts. It
// fails if the node started without gossip keys. To rotate without
// cutting the cluster: give every node the new key as a second key
// (old, new); once all have it, make it first everywhere (new, old); once
// all encrypt with it, remove the old one (new).
func (n *Node) SetGossipKeys(keys [][]byte) error {
	if err := n.members.SetGossipKeys(keys); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	return nil
}

// Metrics returns the registry of the node's Prometheus metrics.
func (n *Node) Metrics() *prometheus.Registry { return n.reg }

// GossipAddr returns the address other nodes join this one at (for their
// Config.Seeds).
func (n *Node) GossipAddr() string { return n.members.GossipAddr() }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Members returns the names of the live members, this node included, in
// order.
func (n *Node) Members() []string { return slices.Clone(n.members.View().Members) }

// Records returns how many client records the node holds.
func (n *Node) Records() int { return n.store.len() }

// Settled reports whether the node's last repair pass found every record it
// holds on all of its owners, and no membership change since calls for
// another.
func (n *Node) Settled() bool { return n.settled.Load() == n.changes.Load() }

// Holds reports whether the node holds a record for key.
func (n *Node) Holds(key string) bool { return n.store.get(key) != nil }

// Leave leaves the cluster gracefully: it first copies every record it
// holds to the owners the record will have without this node, so no record
// has fewer than k copies at any time, then tells the others it is leaving,
// and closes. It returns an error if some record could not be handed over
// (the others then repair from their copies) or the leave message was not
// confirmed within timeout.
func (n *Node) Leave(timeout time.Duration) error {
	var others []string
	for _, m := range n.Members() {
		if m != n.cfg.Name {
			others = append(others, m)
		}
	}
	failed := 0
	for _, key := range n.store.keys() {
		rec := n.store.spread(key)
		if rec == nil {
			continue
		}
		for _, o := range Owners(key, others, max(1, rec.Copies)) {
			if _, _, err := n.storeOn(context.Background(), o, rec, 0, true, 0); err != nil {
				failed++
			}
		}
	}
	err := n.members.Leave(timeout)
	n.Close()
	if failed > 0 {
		err = errors.Join(fmt.Errorf("cluster: %d copies not handed over on leaving", failed), err)
	}
	return err
}

// Close stops the node at once, as a crash would for the others: its
// records are gone with it.
func (n *Node) Close() {
	select {
	case <-n.stop:
		return
	default:
	}
	close(n.stop)
	n.members.Close()
	n.peer.Stop()
	n.done.Wait()
}

// KeyOf returns the record key of a client identity: a hash, so records
// show no identities.
func KeyOf(client string) string {
	sum := sha256.Sum256([]byte(client))
	return hex.EncodeToString(sum[:20])
}

// viewChange is a view of the members and when this node came to see it.
type viewChange struct {
	hash uint64
	at   time.Time
}

// triggerRepair runs a repair pass soon, after a change of membership.
func (n *Node) triggerRepair() {
	if g := n.group.Load(); g != nil {
		n.changedAt(g.View().Hash, time.Now())
	}
	n.changes.Add(1)
	select {
	case n.repairNow <- struct{}{}:
	default:
	}
}

// changedAt returns when this node came to see the view of hash h, first
// recording it at now if it is new: the group calls triggerRepair just
// after each change, and a request may see the view first.
func (n *Node) changedAt(h uint64, now time.Time) time.Time {
	n.changedMu.Lock()
	defer n.changedMu.Unlock()
	if n.changed.hash != h {
		n.changed = viewChange{hash: h, at: now}
	}
	return n.changed.at
}

// settleWindow is how long after a change of the view a node reads a
// record from every member, not only its owners (see readFrom): the peer
// call timeout, within which every push of the repair pass that the change
// starts ends (or fails, and is retried), plus that pass's start delay.
func (n *Node) settleWindow() time.Duration { return n.cfg.Timeout + repairDelay }

// fetch reads a client's record from owners (the owners of view, or every
// member of it, see readFrom), in parallel, and decides the read with
// newest: the newest record wins, and every one must answer (else
// CodeUnavailable). Until the cluster notices that an owner died, its
// records are unavailable; then they have other owners. A member that sees
// other members than view refuses, and so does this node's link once its
// own view changed (see pending.view).
func (n *Node) fetch(ctx context.Context, key string, owners []string, view uint64) (*Record, error) {
	start := time.Now()
	defer func() { n.m.fetchTime.Observe(time.Since(start).Seconds()) }()
	// Every other owner's read leaves at once; this node's own copy is
	// read while they are on their way.
	ops := make([]started, len(owners))
	for i, o := range owners {
		if o != n.cfg.Name {
			ops[i] = n.startOn(ctx, o, fetchOp(key), view)
		}
	}
	found := make([]*Record, 0, len(owners))
	var failed error
	nfailed := 0
	for i, o := range owners {
		var rec *Record
		var err error
		if o == n.cfg.Name {
			rec = n.store.get(key)
		} else {
			rec, err = fetched(ops[i].wait(ctx))
		}
		if err != nil {
			failed = err
			nfailed++
			continue
		}
		found = append(found, rec)
	}
	rec, outcome := newest(found, nfailed)
	n.m.fetchBy[outcome].Inc()
	if outcome == fetchUnavailable {
		return nil, scone.WrapError(scone.CodeUnavailable, "an owner of the client's state did not answer", failed)
	}
	return rec, nil
}

// write stores rec, made from version base, on its owners in view (a view
// hash; see pending.view), as a writeRound decides (to every owner at once;
// undos of a failed write), and returns how many took it. It fails with
// CodeUnavailable or CodeConflict when nothing changed, and with
// CodeInDoubt when an owner that may hold the write did not confirm taking
// it back: the write may still land.
//
// A write is not abandoned when its caller goes away (the client cancelled
// the call, or its deadline passed): once it has left for the owners, it
// ends as their answers decide, within the peer call timeout. A client
// that gives up on a call may read its state at once, from an owner that
// took the write: a write given up on then would be taken back (undo)
// under that read, which would have seen a state that then disappears
// (TestWriteOfCallerGone). A caller gone before the write leaves sends
// nothing: the call changes nothing, as the client, which gets no reply,
// may already have read.
func (n *Node) write(ctx context.Context, rec *Record, base uint64, owners []string, need int, view uint64) (int, error) {
	if err := ctx.Err(); err != nil {
		n.m.writeBy[outcomeUnavailable].Inc()
		return 0, scone.WrapError(scone.CodeUnavailable, "the caller went away before the new state was written; nothing changed", err)
	}
	ctx = context.WithoutCancel(ctx)
	if n.settling(rec.Key, max(len(owners), rec.Copies)) {
		n.m.writeBy[outcomeUnavailable].Inc()
		return 0, scone.NewError(scone.CodeUnavailable, "an owner of the client's state left the group a moment ago; retry")
	}
	start := time.Now()
	defer func() { n.m.replication.Observe(time.Since(start).Seconds()) }()
	w := newWriteRound(owners, need, rec.RV)
	var cause error // the last error of an owner, for the failure's cause
	answer := func(o string, t time.Time, v Verdict, held uint64, err error) []string {
		hooktrace.OwnerWrite(ctx, o, t, v.String(), err)
		if err != nil {
			cause = err
		}
		return w.answer(o, answerOf(v, err), held)
	}
	op := storeRecordOp(rec, base, false)
	ops := make([]started, len(owners))
	for try, to := 0, w.start(); len(to) > 0; try++ {
		if try > 0 {
			// A rival write holds an owner: give its writer the time to
			// take it back (see writeRound).
			time.Sleep(time.Millisecond << try)
		}
		// The write leaves for every other owner at once; this node
		// writes its own copy while they are on their way.
		t := time.Now()
		for i, o := range to {
			if o != n.cfg.Name {
				ops[i] = n.startOn(ctx, o, op, view)
			}
		}
		var again []string
		if slices.Contains(to, n.cfg.Name) {
			v, held := n.store.put(rec, base, false)
			again = append(again, answer(n.cfg.Name, t, v, held, nil)...)
		}
		for i, o := range to {
			if o != n.cfg.Name {
				v, held, err := storedBy(ops[i].wait(ctx))
				again = append(again, answer(o, t, v, held, err)...)
			}
		}
		to = again
	}
	if w.distrust {
		n.store.distrust(rec.Key) // this node's copy, if any, is behind
	}
	return n.failWrite(w, rec, cause)
}

var errConflict = scone.NewError(scone.CodeConflict, "another request changed this client's state first")

// failWrite takes back a failed write of rec, in parallel, on the owners
// the writeRound w names, and returns how the write ended: the number of
// owners that took it, or its error (cause: an owner's last error). A
// member that does not answer keeps the write if it took it, and a later
// read may see it, as when a server dies mid-call: the write is in doubt.
func (n *Node) failWrite(w *writeRound, rec *Record, cause error) (int, error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, m := range w.undos() {
		wg.Go(func() {
			settles := n.undoOn(m, rec)
			mu.Lock()
			defer mu.Unlock()
			w.undone(m, settles)
		})
	}
	wg.Wait()
	end := w.result()
	n.m.writeBy[end.outcome].Inc()
	var err *scone.Error
	switch end.failed {
	case "":
		return end.took, nil
	case outcomeConflict:
		err = errConflict
	default:
		err = scone.WrapError(scone.CodeUnavailable, end.reason, cause)
	}
	if end.outcome == outcomeInDoubt {
		return 0, scone.WrapError(scone.CodeInDoubt,
			err.Message()+", and a node that may hold the new state did not confirm taking it back: it may still take effect", err)
	}
	return 0, err
}

// settling reports whether an owner of key for k copies, as this node saw
// the members until lately, left less than the Lease ago (see inLease).
func (n *Node) settling(key string, k int) bool {
	if n.cfg.Lease == 0 {
		return false
	}
	now := time.Now() // the monotonic clock, as the departures
	return inLease(key, k, n.members.View().Members, n.members.Departures(now), now, n.cfg.Lease)
}

// trusted returns this node's own copy of key's record when it can serve a
// request without asking the other owners (see trust).
func (n *Node) trusted(key string, owners []string) (*Record, bool) {
	if n.cfg.Degrade || n.cfg.Lease == 0 || !slices.Contains(owners, n.cfg.Name) {
		return nil, false
	}
	rec, gen, at := n.store.getStored(key)
	if rec == nil || at == untrusted {
		return nil, false
	}
	agreed := make(map[string]agreement, len(owners))
	for _, o := range owners {
		if o == n.cfg.Name {
			continue
		}
		if l, err := n.link(o); err == nil {
			agreed[o] = l.agreement()
		}
	}
	s := stored{rec: rec, gen: gen, at: at}
	if !trust(n.cfg.Name, owners, n.cfg.Degrade, n.cfg.Lease, s, n.changes.Load(), agreed, time.Now().UnixNano()) {
		return nil, false
	}
	return rec, true
}

// repairLoop runs repair at every change of membership and every
// RepairInterval, and drops expired records.
func (n *Node) repairLoop() {
	defer n.done.Done()
	tick := time.NewTicker(n.cfg.RepairInterval)
	defer tick.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-n.repairNow:
			// Let a burst of membership events settle.
			select {
			case <-time.After(repairDelay):
			case <-n.stop:
				return
			}
		case <-tick.C:
			n.store.sweep(n.cfg.Now())
		}
		n.repair()
	}
}

// repairDelay is how long a repair pass waits after a change of
// membership, to let a burst of membership events settle.
const repairDelay = 20 * time.Millisecond

// repair copies every record the node holds to its owners, and hands over
// the ones it no longer owns. Records are re-checked at the next pass if a
// copy failed. The copies go in the view the owners were chosen in: once
// the view changes, the pass's pushes fail, and the next pass copies them.
func (n *Node) repair() {
	start := time.Now()
	gen := n.changes.Load()
	view := n.members.View()
	members := slices.Clone(view.Members)
	if !slices.Contains(members, n.cfg.Name) {
		return // not yet a member of its own view
	}
	backlog := 0
	copied := 0
	for _, key := range n.store.keys() {
		rec := n.store.get(key)
		if rec == nil {
			continue
		}
		plan := PlanRepair(n.cfg.Name, []string{key}, members, max(1, rec.Copies))
		if len(plan) == 0 {
			continue
		}
		if len(plan[0].PushTo) > 0 && !n.store.spreadIf(rec) {
			continue // written meanwhile: the next pass copies the new one
		}
		a := plan[0]
		failed := 0
		for _, o := range a.PushTo {
			v, _, err := n.storeOn(context.Background(), o, rec, 0, true, view.Hash)
			switch {
			case err != nil:
				failed++
			case v == Accepted:
				copied++
			}
		}
		drop, late := a.pushed(failed)
		if late {
			backlog++
		}
		if drop {
			n.store.drop(a.Key, rec)
		}
	}
	n.m.backlog.Set(float64(backlog))
	n.m.repairs.Add(float64(copied))
	if copied > 0 || backlog > 0 {
		d := time.Since(start)
		n.m.repairTime.Observe(d.Seconds())
		n.cfg.Logger.Info("repair pass", "node", n.cfg.Name, "copied", copied, "backlog", backlog, "took", d)
	}
	if backlog > 0 {
		time.AfterFunc(100*time.Millisecond, n.triggerRepair)
	} else {
		n.settled.Store(gen)
	}
}
