package circulate

import (
	"context"
	"sync"
	"time"

	pb "github.com/scone-project/scone/circulate/circulatepb"
)

// handoffWorkers bounds the hand-offs in flight from one relay.
const handoffWorkers = 16

// loop moves the copies this relay holds: each tick it hands on the copies
// it is the primary of and has held for Dwell, checks on copies that have
// not moved for long, drops expired ones, and forgets old records of
// hand-offs. A change of membership runs it at once, so copies on a relay
// that left are recreated without waiting.
func (s *Store) loop() {
	defer s.done.Done()
	tick := time.NewTicker(max(s.cfg.Dwell/4, 10*time.Millisecond))
	defer tick.Stop()
	s.watch()
	for {
		select {
		case <-s.stop:
			return
		case sl := <-s.due:
			s.sem <- struct{}{}
			s.done.Add(1)
			go func() {
				defer s.done.Done()
				defer func() { <-s.sem }()
				s.moveWritten(sl)
			}()
			continue
		case <-tick.C:
		case <-s.changed:
			s.watch()
		}
		s.pass()
	}
}

// moveWritten hands on the copies of a slot just written to, if this relay
// is still their primary and they can move.
func (s *Store) moveWritten(sl *slot) {
	it := sl.state().it
	if it != nil && it.written && s.rules.next(s.knowledge(), it, s.cfg.Now(), time.Now()) == stepHandoff {
		s.handoff(sl, it, false)
	}
}

// moveSoon asks the loop to hand on the copies of sl, just written to; if
// it is busy, its next pass does (next).
func (s *Store) moveSoon(sl *slot) {
	select {
	case s.due <- sl:
	default:
	}
}

// pass runs one round of the loop.
func (s *Store) pass() {
	now, mono := s.cfg.Now(), time.Now()
	k := s.knowledge()
	sem := s.sem
	var wg sync.WaitGroup
	for key, sl := range s.snapshot() {
		st := sl.state()
		it := st.it
		if it == nil {
			if now.Sub(st.movedAt) > s.forgetAfter() {
				s.remove(key, sl)
			}
			continue
		}
		var act func(*slot)
		switch s.rules.next(k, it, now, mono) {
		case stepExpire:
			s.expire(sl, it)
			continue
		case stepHandoff:
			act = func(sl *slot) { s.handoff(sl, it, false) }
		case stepCheck:
			act = s.check
		default:
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			act(sl)
		})
	}
	wg.Wait()
	s.forgetRoutes(now)
}

// handoff moves the copies of a slot to the relays of the next hop: it puts
// them on every one of them, and once all have taken them, retires the
// copies of this hop (this relay's last). If a relay of the next hop fails
// to take them, the others go back to what they held, and the copies stay
// where they are until the next try. want, if not nil, is the copy it was
// decided to move: if the slot holds another by now (it was written or
// moved meanwhile), nothing is done. force hands on even a copy this relay
// is not the primary of (on leaving). It reports whether the copies are
// elsewhere now.
func (s *Store) handoff(sl *slot, want *item, force bool) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*s.cfg.Timeout)
	defer cancel()
	if err := sl.acquire(ctx); err != nil {
		return false
	}
	defer sl.release()
	it := sl.state().it
	k := s.knowledge()
	if want != nil && it != want || !live(it, s.cfg.Now()) || !force && !s.rules.actingPrimary(k, it) {
		return false // changed, gone, expired (dropped by the next pass), or not ours to move
	}
	next := s.rules.handoff(k, it)
	if len(next.holders) == 0 {
		return false // alone and leaving
	}
	if h := s.rules.handingOff(it); h != it {
		it = h
		sl.set(it)
	}
	ctx, span := s.startHandoff(ctx, next)
	took, refused, err := s.putAll(ctx, s.rules.remote(next), pb.PutRequest_HANDOFF, next, 0)
	var youngest *time.Duration
	if refused != nil {
		youngest = &refused.youngest
	}
	res := s.rules.handedOff(it, next, took, youngest, err != nil, s.cfg.Now(), time.Now())
	if len(res.undo) > 0 {
		// The relays that took the copy go back to what they held.
		s.putEach(res.undo, pb.PutRequest_UNDO, next, 0)
	}
	s.m.handoffs.WithLabelValues(res.outcome).Inc()
	span.end(res.outcome)
	switch {
	case res.outcome == "stale":
		// A relay holds a newer copy, held long enough that no failed
		// hand-off or write can take it back: this one is left over.
		s.cfg.Logger.Debug("hand-off refused: left over", "relay", s.cfg.Name, "key", short(it.key), "gen", it.gen, "hop", it.hop)
		sl.moved(res.moved, s.cfg.Now())
		return true // newer copies are elsewhere
	case res.outcome == "failed":
		s.cfg.Logger.Debug("hand-off failed", "relay", s.cfg.Name, "key", short(it.key), "err", err)
		return false
	}
	s.retireOn(res.retire, it, next.primary())
	if res.keep != nil {
		sl.set(res.keep)
	} else {
		sl.moved(res.moved, s.cfg.Now())
	}
	s.cfg.Logger.Debug("handed on", "relay", s.cfg.Name, "key", short(it.key), "gen", it.gen, "hop", next.hop, "holders", next.holders)
	return true
}

// retireOn tells members to drop their copies up to it, best effort.
func (s *Store) retireOn(members []string, it *item, movedTo string) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Go(func() {
			if c, err := s.conn(m); err == nil {
				c.Retire(ctx, &pb.RetireRequest{Key: it.key, Gen: it.gen, Hop: it.hop, MovedTo: movedTo})
			}
		})
	}
	wg.Wait()
}

// check asks the primary of a copy that has not moved for three dwell
// times whether it is still current. If the primary (or the relay it
// handed the copies to) holds a copy at least as new, settled, this one was
// left behind (its retirement lost) and is dropped. If the primary holds
// the same copy, it is only slow to move it. Otherwise (the primary does
// not answer, or lost the copy) this relay hands the copies on itself: it
// may hold the last one.
func (s *Store) check(sl *slot) {
	it := sl.state().it
	if it == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.Timeout)
	defer cancel()
	a := s.ask(ctx, it.key, []string{it.primary()})[0]
	if a.err == nil && a.it == nil && a.movedTo != "" && a.movedTo != s.cfg.Name {
		a = s.ask(ctx, it.key, []string{a.movedTo})[0]
	}
	switch s.rules.check(it, a) {
	case checkLeftOver:
		if sl.acquire(ctx) == nil {
			if sl.state().it == it {
				s.cfg.Logger.Debug("left over: dropped", "relay", s.cfg.Name, "key", short(it.key), "gen", it.gen, "hop", it.hop)
				s.m.handoffs.WithLabelValues("stale").Inc()
				sl.moved(a.member, s.cfg.Now())
			}
			sl.release()
		}
	case checkHandoff:
		s.handoff(sl, it, true)
	}
}

// expire drops an expired copy.
func (s *Store) expire(sl *slot, it *item) {
	if !sl.tryAcquire() {
		return // busy: next time
	}
	defer sl.release()
	if sl.state().it == it {
		sl.set(nil)
		s.m.expired.Inc()
	}
}

// forgetAfter is how long a relay remembers where it handed copies.
func (s *Store) forgetAfter() time.Duration { return 10*s.cfg.Dwell + s.cfg.QueryTimeout }

// remove deletes an empty slot from the store.
func (s *Store) remove(key string, sl *slot) {
	if !sl.tryAcquire() {
		return
	}
	defer sl.release()
	st := sl.state()
	if st.it != nil {
		return
	}
	s.mu.Lock()
	if s.slots[key] == sl {
		delete(s.slots, key)
	}
	s.mu.Unlock()
	sl.ref.Store(&slotState{dead: true})
}

// forgetRoutes drops the routes of reads that had no write.
func (s *Store) forgetRoutes(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, r := range s.routes {
		if now.Sub(r.at) > time.Minute {
			delete(s.routes, k)
		}
	}
}
