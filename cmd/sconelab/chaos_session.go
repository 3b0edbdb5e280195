package main

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/chaos"
	"github.com/scone-project/scone/internal/grpcframe"
	"github.com/scone-project/scone/sconegrpc"
)

// chaosSession is one client session of a chaos run: it calls the
// gateway (directly, through relays, or on the cluster's nodes) and
// records every call in the run's history.
type chaosSession struct {
	r     *chaosRun
	id    int
	rng   *rand.Rand
	gw    shopper
	sess  *session         // holds the SCONEs in client mode
	seen  map[string]int32 // the cart as last seen, to draw removals from
	ident string           // the scone-client header (relay, cluster)
}

// gatewayService is the service of the gateway's SCONEs.
const gatewayService = "bookstore.v1.Gateway"

func (r *chaosRun) newSessions() ([]*chaosSession, func(), error) {
	if r.cfg.transport == "http" {
		var targets []httpTarget
		for _, a := range r.entry {
			targets = append(targets, httpTarget{r.names[a], a})
		}
		return r.sessionsWith(newHTTPShopper(targets, r.mode.clientHolds)), func() {}, nil
	}
	var opts []grpc.DialOption
	if r.mode.clientHolds {
		opts = sconegrpc.DialOptions(sconegrpc.WithHolderFromContext(holderOf))
	}
	conn, err := shop.DialReplicas(r.entry, opts...)
	if err != nil {
		return nil, nil, err
	}
	gw := &grpcShopper{gw: pb.NewGatewayClient(conn), names: r.names}
	return r.sessionsWith(gw), func() { conn.Close() }, nil
}

// sessionsWith returns the run's sessions, calling through gw.
func (r *chaosRun) sessionsWith(gw shopper) []*chaosSession {
	var out []*chaosSession
	for i := range r.cfg.sessions {
		out = append(out, &chaosSession{
			r: r, id: i, gw: gw, seen: map[string]int32{},
			rng:   rand.New(rand.NewPCG(r.cfg.seed, uint64(i+1))),
			sess:  &session{id: i, dict: scone.NewDict()},
			ident: fmt.Sprintf("chaos-%d-%d", r.cfg.seed, i),
		})
	}
	return out
}

func (s *chaosSession) context(ctx context.Context) context.Context {
	if s.r.mode.clientHolds {
		return context.WithValue(ctx, sessionKey{}, s.sess)
	}
	return metadata.AppendToOutgoingContext(ctx, "scone-client", s.ident)
}

// loop makes operations until ctx ends.
func (s *chaosSession) loop(ctx context.Context) {
	for ctx.Err() == nil {
		m := &cartModel{items: maps.Clone(s.seen)}
		s.do(ctx, m.nextOp(s.rng))
		select {
		case <-ctx.Done():
		case <-time.After(s.r.cfg.think):
		}
	}
}

// finalRead reads the cart until a read succeeds (one minute at most),
// so that every session's history ends with its state.
func (s *chaosSession) finalRead(ctx context.Context) {
	deadline := time.Now().Add(time.Minute)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		if s.do(ctx, op{kind: opGet}) == chaos.OK {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	s.r.say("session %d: no successful read in a minute after the faults healed", s.id)
}

// do makes one call and records it.
func (s *chaosSession) do(ctx context.Context, o op) chaos.Outcome {
	r := s.r
	rec := chaos.Op{Session: s.id, Input: chaos.Input{Kind: chaos.Kind(o.kind), ISBN: o.isbn, Qty: o.quantity}}
	if r.mode.clientHolds {
		for _, h := range s.sess.dict.Headers() {
			if h.Service == gatewayService {
				rec.Expires, rec.HasExpiry, rec.KeyID = r.hist.Offset(h.Expires), true, h.KeyID
			}
		}
	}
	before := r.clockReads()
	rec.Invoke = r.hist.Now()
	cctx, cancel := context.WithTimeout(s.context(ctx), r.cfg.timeout)
	view, order, served, err := s.gw.call(cctx, o)
	cancel()
	rec.Return = r.hist.Now()
	rec.Served = served
	if c, ok := r.clocks[served]; ok {
		skew, gen, known := c.read()
		b := before[served]
		rec.Skew, rec.SkewKnown = skew, known && b.known && b.gen == gen
	}
	rec.Outcome, rec.NoReply = r.classify(err)
	switch {
	case err != nil:
		rec.Err = status.Code(err).String()
		if sc := grpcframe.StatusCode(err); sc != scone.CodeUnknown {
			rec.Err += " (" + sc.String() + ")"
		}
		rec.Err += ": " + status.Convert(err).Message()
		if len(rec.Err) > 200 {
			rec.Err = rec.Err[:200]
		}
	case order != nil:
		rec.Items, rec.Changes = lines(order.GetLines()), order.GetOperations()
		clear(s.seen)
	default:
		rec.Items, rec.Reserved, rec.Changes = lines(view.GetLines()), view.GetReserved(), view.GetOperations()
		s.seen = maps.Clone(rec.Items)
	}
	if rec.Outcome == chaos.OK && r.mode.clientHolds {
		rec.Versions = map[string]uint64{}
		for _, h := range s.sess.dict.Headers() {
			rec.Versions[h.Service] = h.Version
		}
	}
	if rec.Outcome == chaos.OK && rec.Changes > 0 {
		r.mu.Lock()
		r.changers[s.id] = true
		r.mu.Unlock()
	}
	r.hist.Add(rec)
	return rec.Outcome
}

func lines(ls []*pb.CartLine) map[string]int32 {
	m := map[string]int32{}
	for _, l := range ls {
		m[l.GetBook().GetIsbn()] = l.GetQuantity()
	}
	return m
}

type clockRead struct {
	gen   uint64
	known bool
}

func (r *chaosRun) clockReads() map[string]clockRead {
	m := make(map[string]clockRead, len(r.clocks))
	for name, c := range r.clocks {
		_, gen, known := c.read()
		m[name] = clockRead{gen, known}
	}
	return m
}

// classify says what a call's error promises: the shop's own refusal,
// no effect, or an unknown effect; and whether the call got no reply.
func (r *chaosRun) classify(err error) (chaos.Outcome, bool) {
	if err == nil {
		return chaos.OK, false
	}
	code, sc := status.Code(err), grpcframe.StatusCode(err)
	if code == codes.FailedPrecondition && sc == scone.CodeUnknown {
		return chaos.Refused, false
	}
	// No reply: a timeout, or a connection that died (a status the server
	// sent carries a SCONE code).
	noReply := sc == scone.CodeUnknown && (code == codes.Unavailable || code == codes.DeadlineExceeded || code == codes.Canceled)
	switch {
	case r.mode.clientHolds && r.cfg.marks && noReply:
		// With a mark store a call whose reply was lost may have spent its
		// version: the next call gets the lost reply back (rolled_back and
		// the newest SCONEs) and goes on from it, so the change took
		// effect after all. Without one, the client's old SCONEs are the
		// state: nothing changed.
		return chaos.Unknown, noReply
	case r.mode.clientHolds:
		// The client keeps its SCONEs when a call fails: nothing changed.
		return chaos.Failed, noReply
	case code == codes.Aborted:
		// A conflict: the write was refused before any copy took it.
		return chaos.Failed, noReply
	case sc == scone.CodeInDoubt:
		// The node says so: the write may still land.
		return chaos.Unknown, noReply
	case sc != scone.CodeUnknown && sc != scone.CodeUnavailable && sc != scone.CodeInternal:
		// A SCONE that did not open: the call stopped before any change.
		return chaos.Failed, noReply
	case sc == scone.CodeUnavailable && r.mode.unavailableChangesNothing:
		return chaos.Failed, noReply
	}
	return chaos.Unknown, noReply
}
