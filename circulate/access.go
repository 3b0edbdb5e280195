package circulate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/circulate/circulatepb"
	"github.com/scone-project/scone/cluster"
	"github.com/scone-project/scone/internal/hook"
)

// maxForwards bounds how many relays pass one write on to the primary.
const maxForwards = 4

// Get implements relay.Store: it returns the client's SCONEs for target from
// this relay's copy if it committed it within the Lease, or else from the
// group (see query).
func (s *Store) Get(ctx context.Context, client, target string) ([][]byte, error) {
	key := cluster.KeyOf(client)
	now := s.cfg.Now()
	it := s.slot(key).state().it
	alone, err := s.rules.read(knowledge{members: s.members.View().Members}, it, now, time.Now())
	switch {
	case err != nil:
		s.m.queries.WithLabelValues("unavailable").Inc()
		return nil, err
	case alone:
		s.m.queries.WithLabelValues("local").Inc()
	default:
		if it, err = s.query(ctx, key); err != nil {
			return nil, err
		}
	}
	r := route{at: now}
	if it != nil {
		r.primary = it.primary()
	}
	s.mu.Lock()
	s.routes[key] = r
	s.mu.Unlock()
	if it == nil {
		return nil, nil
	}
	d := scone.NewDict(scone.WithDictClock(s.cfg.Now))
	if err := hook.DictApply(d, nil, it.scones); err != nil {
		return nil, err
	}
	return d.Match(nil, target), nil
}

// query asks every other live relay, in parallel, for the client's copy,
// and returns the newest of theirs and its own; if one of them did not
// answer, it fails (unavailable). A relay that sees fewer live relays than the
// copies each client needs answers nothing: the copies may all be on
// relays it cannot see (it may be the one cut off). A relay that sees
// other live relays than this one does not answer either (it counts as
// missing): one of the two may be cut off from the others' gossip. If none holds one, the client has no SCONEs, but
// only if every relay said so within QueryTimeout: otherwise the query
// fails (Unavailable), so a request is never served with an empty state
// while its state may be on a relay that is slow to answer.
func (s *Store) query(ctx context.Context, key string) (*item, error) {
	start := time.Now()
	defer func() { s.m.queryTime.Observe(time.Since(start).Seconds()) }()
	k := s.knowledge()
	if err := s.rules.canQuery(k); err != nil {
		s.m.queries.WithLabelValues("unavailable").Inc()
		return nil, err
	}
	others := slices.DeleteFunc(slices.Clone(k.members), func(m string) bool { return m == s.cfg.Name })
	ctx, cancel := context.WithTimeout(ctx, s.cfg.QueryTimeout)
	defer cancel()
	answers := s.ask(ctx, key, others)
	best, missing := newest(answers, s.cfg.Now())
	if best == nil && missing == 0 {
		if moved := s.rules.movedTo(answers); len(moved) > 0 {
			best, missing = newest(s.ask(ctx, key, moved), s.cfg.Now())
		}
	}
	best, err := s.rules.pick(best, missing, s.slot(key).state().it, s.cfg.Now())
	traceQuery(ctx, len(others), missing, best != nil, err)
	switch {
	case err != nil:
		// The relays that did not answer may hold a newer copy than
		// any of the others, or the only one.
		s.m.queries.WithLabelValues("unavailable").Inc()
		return nil, scone.NewError(scone.CodeUnavailable, fmt.Sprintf(
			"circulate: %d relays did not answer within %v (or see other live relays)", missing, s.cfg.QueryTimeout))
	case best != nil:
		s.m.queries.WithLabelValues("found").Inc()
		return best, nil
	}
	s.m.queries.WithLabelValues("new").Inc()
	return nil, nil
}

// ask sends Query to members in parallel and returns their answers.
func (s *Store) ask(ctx context.Context, key string, members []string) []answer {
	out := make([]answer, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() {
			out[i] = answer{member: m}
			c, err := s.conn(m)
			if err != nil {
				out[i].err = err
				return
			}
			r, err := c.Query(ctx, &pb.QueryRequest{Key: key, View: s.viewHash()})
			if err != nil {
				out[i].err = err
				return
			}
			if r.Refused {
				out[i].err = errViewsDiffer
				return
			}
			out[i].movedTo = r.MovedTo
			out[i].age = time.Duration(r.AgeMs) * time.Millisecond
			if r.Copy != nil {
				out[i].it, out[i].err = fromProto(r.Copy, s.cfg.MaxPerClient, s.cfg.Now())
			}
		})
	}
	wg.Wait()
	return out
}

// Apply implements relay.Store: the write goes to the primary holder of the
// client's copies, found by the read that came before it, and takes effect
// there only if the copies still hold what the request carried (sent).
func (s *Store) Apply(ctx context.Context, client string, r *hook.Reply, sent [][]byte) error {
	key := cluster.KeyOf(client)
	s.mu.Lock()
	rt, ok := s.routes[key]
	delete(s.routes, key)
	s.mu.Unlock()
	req := &pb.ApplyRequest{Key: key, Scones: r.SCONEs, Sent: sent}
	for _, d := range r.Dropped {
		req.Dropped = append(req.Dropped, &pb.Dropped{Service: d.Service, Scope: d.Scope})
	}
	target := rt.primary
	if !ok || target == "" {
		// No relay held the client's SCONEs: the first relay of hop 0
		// creates them, so two first writes meet there.
		req.Create = true
		target = s.home(key)
	}
	rep, err := s.applyAt(ctx, target, req)
	switch {
	case err != nil && notSent(err):
		// The primary left the group: nothing was sent (see routeWrite).
		s.m.writes.WithLabelValues("unavailable").Inc()
		return errPrimaryGone
	case err != nil:
		s.m.writes.WithLabelValues("in_doubt").Inc()
		return scone.WrapError(scone.CodeInDoubt, "circulate: the primary holder of the client's SCONEs did not answer: the write may still take effect", err)
	}
	code := scone.Code(rep.Code)
	switch code {
	case 0:
		s.m.writes.WithLabelValues("ok").Inc()
		return nil
	case scone.CodeConflict:
		s.m.writes.WithLabelValues("conflict").Inc()
	case scone.CodeInDoubt:
		s.m.writes.WithLabelValues("in_doubt").Inc()
	default:
		s.m.writes.WithLabelValues("unavailable").Inc()
	}
	return scone.NewError(code, rep.Message)
}

// home returns the relay that creates key's first copies.
func (s *Store) home(key string) string {
	if h := placement(key, 0, s.members.View().Members, 1); len(h) == 1 {
		return h[0]
	}
	return s.cfg.Name
}

// applyAt runs a write on member (this relay or another), following it to
// where the copies moved.
func (s *Store) applyAt(ctx context.Context, member string, req *pb.ApplyRequest) (*pb.ApplyReply, error) {
	if member == s.cfg.Name {
		return s.applyHere(ctx, req), nil
	}
	c, err := s.conn(member)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*s.cfg.Timeout)
	defer cancel()
	return c.Apply(ctx, req)
}

// applyHere runs a write on this relay: as the primary holder of the
// client's copies, or as the relay that creates them; else it passes the
// write on to the primary.
func (s *Store) applyHere(ctx context.Context, req *pb.ApplyRequest) *pb.ApplyReply {
	sl, err := s.lockSlot(ctx, req.Key)
	if err != nil {
		return failure(err)
	}
	rt := s.rules.routeWrite(s.knowledge(), sl.state(), req.Create, s.cfg.Now())
	switch {
	case rt.forward != "":
		sl.release()
		return s.forward(ctx, rt.forward, req)
	case rt.err != nil:
		sl.release()
		return failure(rt.err)
	}
	err = s.write(ctx, sl, rt.cur, req)
	sl.release()
	if err == nil {
		s.moveSoon(sl) // the copies move on after a write
	}
	return failure(err)
}

// forward passes a write on to the primary named by another relay.
func (s *Store) forward(ctx context.Context, to string, req *pb.ApplyRequest) *pb.ApplyReply {
	if req.Forwards >= maxForwards {
		return failure(scone.NewError(scone.CodeUnavailable, "circulate: the client's SCONEs are moving; retry"))
	}
	req.Forwards++
	req.Create = false
	rep, err := s.applyAt(ctx, to, req)
	switch {
	case err != nil && notSent(err):
		return failure(errPrimaryGone)
	case err != nil:
		return failure(scone.WrapError(scone.CodeInDoubt, "circulate: the primary holder did not answer: the write may still take effect", err))
	}
	return rep
}

// write applies a reply on top of cur (nil: a new client), replicates the
// result to the other holders, and keeps it; sl is locked. If a holder
// refuses it, the holders that took it undo it, and the write fails with
// nothing changed (conflict; unavailable if the holder only took nothing,
// with no other write first: see written). If a holder does not answer,
// they undo it too, but that holder may take it yet (the put may be held
// up in the network): the write fails as in doubt.
func (s *Store) write(ctx context.Context, sl *slot, cur *item, req *pb.ApplyRequest) error {
	d := scone.NewDict(scone.WithDictLimits(s.cfg.MaxPerClient, s.cfg.MaxBytesPerClient), scone.WithDictClock(s.cfg.Now))
	next := &item{key: req.Key, gen: 1, since: s.cfg.Now()}
	mode := pb.PutRequest_HANDOFF
	if cur != nil {
		if err := hook.DictApply(d, nil, cur.scones); err != nil {
			return err
		}
		next.gen, next.hop, next.holders = cur.gen+1, cur.hop, cur.holders
		mode = pb.PutRequest_UPDATE
	} else {
		next.holders = s.rules.holdersFor(s.knowledge(), req.Key)
	}
	r := &hook.Reply{SCONEs: req.Scones}
	for _, k := range req.Dropped {
		r.Dropped = append(r.Dropped, hook.HolderKey{Service: k.Service, Scope: k.Scope})
	}
	if err := hook.ApplyIfBase(d, r, req.Sent); err != nil {
		return err
	}
	next.scones = d.Tokens()
	if len(next.scones) == 0 {
		s.dropAll(sl, cur)
		return nil
	}
	if len(next.holders) < s.cfg.Copies {
		return scone.NewError(scone.CodeUnavailable, fmt.Sprintf(
			"circulate: %d relays live, fewer than the %d copies each client needs", len(next.holders), s.cfg.Copies))
	}
	next.expires = expiry(next.scones)
	var base uint64
	if cur != nil {
		base = cur.gen
	}
	took, refused, err := s.putAll(ctx, next.holders[1:], mode, next, base)
	if refused != nil || err != nil {
		var conflict error
		if refused != nil {
			conflict = errRefused
		}
		return written(conflict, err, s.undoAll(took, next))
	}
	next.committed, next.written = time.Now(), true
	sl.set(next) // the primary is never asked to undo: it keeps no prev
	s.cfg.Logger.Debug("written", "relay", s.cfg.Name, "key", short(next.key), "gen", next.gen, "hop", next.hop, "holders", next.holders)
	return nil
}

// dropAll removes every copy of a client whose last session ended; sl is
// locked.
func (s *Store) dropAll(sl *slot, cur *item) {
	if cur == nil {
		return
	}
	for _, h := range cur.holders {
		if h == s.cfg.Name {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
		if c, err := s.conn(h); err == nil {
			c.Retire(ctx, &pb.RetireRequest{Key: cur.key, Gen: cur.gen, Hop: cur.hop})
		}
		cancel()
	}
	sl.set(nil)
}

// refusal says how the relays that refused a Put hold their copies.
type refusal struct {
	youngest time.Duration // the shortest time one has held its copy
}

// putAll sends a Put to members in parallel: it returns those that took
// it, the refusals (nil if none), and an error if one did not answer.
func (s *Store) putAll(ctx context.Context, members []string, mode pb.PutRequest_Mode, it *item, base uint64) (took []string, refused *refusal, err error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	var errs []error
	defer func() { err = errors.Join(errs...) }()
	for _, m := range members {
		wg.Go(func() {
			r, e := s.put(ctx, m, mode, it, base)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case e != nil:
				errs = append(errs, e)
			case !r.Ok:
				age := time.Duration(r.AgeMs) * time.Millisecond
				if refused == nil || age < refused.youngest {
					refused = &refusal{youngest: age}
				}
			default:
				took = append(took, m)
			}
		})
	}
	wg.Wait()
	return took, refused, err
}

// undoAll takes back the write of it on members, and reports whether every
// one of them confirmed it.
func (s *Store) undoAll(members []string, it *item) bool {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	took, _, err := s.putAll(ctx, members, pb.PutRequest_UNDO, it, 0)
	return err == nil && len(took) == len(members)
}

// putEach sends a Put to members, best effort.
func (s *Store) putEach(members []string, mode pb.PutRequest_Mode, it *item, base uint64) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	s.putAll(ctx, members, mode, it, base)
}

// put sends one Put to member.
func (s *Store) put(ctx context.Context, member string, mode pb.PutRequest_Mode, it *item, base uint64) (*pb.PutReply, error) {
	c, err := s.conn(member)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	r, err := c.Put(ctx, &pb.PutRequest{Mode: mode, Copy: it.toProto(), Base: base, View: s.viewHash()})
	if status.Code(err) == codes.FailedPrecondition {
		return nil, fmt.Errorf("%s: %w", member, errNotTaken) // it answered, and took nothing
	}
	return r, err
}

// failure returns the reply of a write that ended with err (nil: success).
func failure(err error) *pb.ApplyReply {
	if err == nil {
		return &pb.ApplyReply{}
	}
	code := scone.CodeOf(err)
	if code == scone.CodeUnknown {
		code = scone.CodeInternal
	}
	return &pb.ApplyReply{Code: uint32(code), Message: err.Error()}
}
