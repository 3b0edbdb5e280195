package scone

import (
	"context"
	"strconv"
	"sync"
	"time"
)

// HighWater keeps, per session, the newest SCONE version presented so far,
// for anti-rollback: a holder that replays an older version of its SCONE
// (to undo a purchase, say) is refused with CodeRolledBack. It is off by
// default, because it is per-session state on the server side: each
// deployment keeps it where it can afford to (this package's memory store,
// the cluster, or a JetStream bucket).
//
// The mark moves when a SCONE is opened, not when one is sealed: a reply
// lost in transit then leaves the client able to retry with the version it
// still holds. The cost is a window of one version: a SCONE sealed but never
// presented can still be replaced by its predecessor.
type HighWater interface {
	// Admit records that the given version of session is being used. It
	// fails with CodeRolledBack when a newer version was admitted before,
	// and with CodeUnavailable or CodeExhausted when it cannot keep the
	// mark. expires is the SCONE's expiry: the mark must be kept until the
	// latest expiry of any version admitted for the session (an older version
	// may outlive a newer one sealed with a shorter TTL), and may be
	// forgotten after it. Admit must be safe for concurrent use.
	Admit(ctx context.Context, session SessionID, version uint64, expires time.Time) error
}

// MemoryHighWater is a HighWater in the server's memory, bounded to a
// number of sessions. It protects against rollback through one server only
// (or behind sticky routing); use a shared store for a fleet. When full of
// live sessions it refuses new ones (CodeExhausted) rather than forgetting a
// mark, which would reopen the rollback it exists to prevent.
type MemoryHighWater struct {
	max   int
	clock func() time.Time

	mu        sync.Mutex
	marks     map[SessionID]mark
	nextSweep time.Time // no mark expires before this
}

type mark struct {
	version uint64
	expires time.Time
}

// NewMemoryHighWater returns a MemoryHighWater for at most max live
// sessions (about 60 bytes each), reading time from clock (nil: time.Now).
func NewMemoryHighWater(max int, clock func() time.Time) *MemoryHighWater {
	if clock == nil {
		clock = time.Now
	}
	return &MemoryHighWater{max: max, clock: clock, marks: make(map[SessionID]mark)}
}

// Admit implements HighWater.
func (h *MemoryHighWater) Admit(_ context.Context, session SessionID, version uint64, expires time.Time) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, ok := h.marks[session]
	if ok {
		if version < m.version {
			return errCode(CodeRolledBack, "version "+strconv.FormatUint(version, 10)+
				" is older than version "+strconv.FormatUint(m.version, 10)+" already presented")
		}
		// The mark must outlive every version it guards: keep the later expiry.
		h.marks[session] = mark{max(version, m.version), latest(expires, m.expires)}
		return nil
	}
	if len(h.marks) >= h.max {
		h.sweep()
		if len(h.marks) >= h.max {
			return errCode(CodeExhausted, "anti-rollback store full of live sessions")
		}
	}
	h.marks[session] = mark{version, expires}
	if expires.Before(h.nextSweep) {
		h.nextSweep = expires
	}
	return nil
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// sweep drops expired marks; it scans at most once per earliest expiry.
func (h *MemoryHighWater) sweep() {
	now := h.clock()
	if now.Before(h.nextSweep) {
		return
	}
	var next time.Time
	for id, m := range h.marks {
		if !now.Before(m.expires) {
			delete(h.marks, id)
		} else if next.IsZero() || m.expires.Before(next) {
			next = m.expires
		}
	}
	h.nextSweep = next
}

// len returns the number of marks held, expired or not.
func (h *MemoryHighWater) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.marks)
}
