package scone

import (
	"context"
	"crypto/rand"
	"math"
)

// Outcome is what Commit did with a request's state.
type Outcome uint8

// The outcomes of Commit.
const (
	// Unchanged: nothing to send; the holder keeps the SCONE it has.
	Unchanged Outcome = iota
	// Updated: a new SCONE was sealed; the holder replaces its copy.
	Updated
	// Dropped: the session ended; the holder deletes its copy.
	Dropped
)

// Restore returns the State of a request: empty when token is empty (the
// first call of a session), or restored from the SCONE it holds. A SCONE that
// does not open is an error, never an empty state: the caller must fail the
// request, so the holder keeps its SCONE. scope is where the holder should
// attach the SCONE sealed from this state.
//
// The checks run in this order, and the first that fails gives the error's
// code: size budget (CodeTooLarge, before any decryption), layout
// (CodeMalformed), key (CodeUnknownKey), authentication (CodeTampered),
// service (CodeWrongService), expiry (CodeExpired), session age
// (CodeSessionExpired, WithMaxSessionAge), client binding (CodeWrongClient,
// WithClientBinding), then, with a mark store (WithMarkStore), revocation
// (CodeRevoked) and anti-rollback (CodeRolledBack).
func (s *Sealer) Restore(ctx context.Context, token []byte, want Expect, scope string) (*State, error) {
	return s.restore(ctx, token, want, scope, nil)
}

// restore is Restore, decrypting the data into buf's storage when it has
// room: a hook's pooled buffer, which the State's data aliases until the
// hook releases it (internal/bridge.ReleaseData).
func (s *Sealer) restore(ctx context.Context, token []byte, want Expect, scope string, buf []byte) (*State, error) {
	st := newState(want, scope)
	st.ctx = ctx
	st.nested = nestedTier(ctx)
	if len(token) == 0 {
		if s.cfg.bind != bindOff && want.Client == "" {
			return nil, errNoIdentity
		}
		if s.cfg.marks != nil {
			var err error
			if st.epoch, err = s.epoch(ctx, want.Service); err != nil {
				return nil, err
			}
		}
		return st, nil
	}
	// Expected values first: open then keeps these strings, not copies.
	st.sc.Service, st.sc.Scope = want.Service, scope
	st.sc.Data = buf[:0]
	// The data stays where the body puts it: the State opens once.
	o, err := s.openData(ctx, &st.sc, token, want, false)
	if err != nil {
		return nil, err
	}
	st.restored = true
	st.stale = o.stale
	st.rev, st.epoch = o.rev, o.epoch
	return st, nil
}

// Commit seals the state a handler left and appends the SCONE, if any, to
// dst. Updated: a new version was sealed (the handler changed the state, or
// the SCONE needed a re-seal; see WithResealUnchanged). Dropped: the handler
// ended a restored session. Unchanged: nothing to send.
//
// Each seal sets the version to one more than the restored one, the issue
// time to now, the expiry to now plus the TTL, and the current revocation
// epoch; a new session gets a random session ID, the service, its start
// time, and (with WithClientBinding) the caller's identity. With a mark
// store, Updated and Dropped spend the restored version: when another
// request spent it first, Commit fails with CodeConflict and the state's
// change is not kept.
func (s *Sealer) Commit(dst []byte, st *State) (Outcome, []byte, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	now := s.cfg.clock()
	ttl := s.cfg.ttl
	if st.ttl > 0 && st.ttl < ttl {
		ttl = st.ttl
	}
	switch {
	case st.dropped && st.restored:
		if s.cfg.marks != nil && !st.nested {
			ended := st.sc
			ended.Version++
			if err := s.spend(st.ctx, &ended, st.rev, nil, st.recovery, st.sc.Expires); err != nil {
				return Unchanged, dst, err
			}
		}
		return Dropped, dst, nil
	case st.dropped, !st.changed && !st.restored && !st.bundleSet:
		return Unchanged, dst, nil
	case !st.changed && !s.cfg.resealUnchanged && !st.stale && !st.bundleSet &&
		st.sc.Scope == st.scope && st.sc.Expires.Sub(now) > ttl/2:
		return Unchanged, dst, nil
	}
	next := st.sc // sealed from a copy: a failed seal leaves the State as it was
	if !st.restored {
		rand.Read(next.Session[:])
		next.Service = st.want.Service
		next.Started = now
	}
	if next.Started.IsZero() {
		next.Started = now // a SCONE of format 1: the session's age counts from here
	}
	if s.cfg.bind != bindOff {
		if st.want.Client == "" {
			return Unchanged, dst, errNoIdentity
		}
		next.Client = st.want.Client // open checked that it is unbound or the same
	}
	if next.Version == math.MaxUint64 {
		return Unchanged, dst, errCode(CodeInternal, "SCONE version exhausted")
	}
	if st.bundleSet {
		next.bundle = st.bundle
	}
	if st.served {
		next.Endpoint, next.Status = st.endpoint, st.status
	}
	next.Scope = st.scope
	next.Version++
	next.IssuedAt = now
	next.Expires = now.Add(ttl)
	next.Epoch = st.epoch
	out, err := s.seal(dst, &next)
	if err != nil {
		return Unchanged, dst, err
	}
	if s.cfg.marks != nil && !st.nested {
		start := len(dst)
		expires := next.Expires
		if st.restored && st.sc.Expires.After(expires) {
			expires = st.sc.Expires // the mark must outlive the version it refuses
		}
		if err := s.spend(st.ctx, &next, st.rev, out[start:], st.recovery, expires); err != nil {
			return Unchanged, dst, err
		}
	}
	st.sc = next
	return Updated, out, nil
}
