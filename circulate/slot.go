package circulate

import (
	"context"
	"sync/atomic"
	"time"
)

// slot is where a relay keeps one client's copy. Its lock is held while the
// copy is written or moved, so the writes of a client and the moves of its
// copies happen one at a time here; reads take the state without it.
type slot struct {
	lock chan struct{}
	ref  atomic.Pointer[slotState] // written with the lock held
}

// slotState is what a slot holds at one time: the copy, if any, and where
// the copies went if this relay handed them on lately.
type slotState struct {
	it      *item
	movedTo string
	movedAt time.Time
	dead    bool // the slot was removed from the store: take another
}

func newSlot() *slot {
	s := &slot{lock: make(chan struct{}, 1)}
	s.ref.Store(&slotState{})
	return s
}

// acquire takes the slot's lock, or fails when ctx ends first.
func (s *slot) acquire(ctx context.Context) error {
	select {
	case s.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tryAcquire takes the lock if it is free.
func (s *slot) tryAcquire() bool {
	select {
	case s.lock <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *slot) release() { <-s.lock }

// state returns what the slot holds.
func (s *slot) state() *slotState { return s.ref.Load() }

// set replaces the copy; the lock must be held. Dropping it (nil) keeps
// the record of where the copies went.
func (s *slot) set(it *item) {
	st := &slotState{it: it}
	if it == nil {
		old := s.ref.Load()
		st.movedTo, st.movedAt = old.movedTo, old.movedAt
	}
	s.ref.Store(st)
}

// moved drops the copy and records that its successors are at primary;
// the lock must be held.
func (s *slot) moved(primary string, now time.Time) {
	s.ref.Store(&slotState{movedTo: primary, movedAt: now})
}
