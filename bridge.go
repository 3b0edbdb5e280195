package scone

import (
	"context"
	"errors"
	"time"

	"github.com/scone-project/scone/internal/bridge"
)

// The operations the module's hooks need and users do not (see
// internal/bridge).
func init() {
	bridge.Peek = peek
	bridge.Seal = func(s *Sealer, dst []byte, sc *SCONE) ([]byte, error) { return s.seal(dst, sc) }
	bridge.Open = func(s *Sealer, ctx context.Context, sc *SCONE, token []byte, want Expect) (uint32, bool, error) {
		o, err := s.open(ctx, sc, token, want)
		return o.keyID, o.stale, err
	}
	bridge.Now = func(s *Sealer) time.Time { return s.cfg.clock() }
	bridge.TTL = func(s *Sealer) time.Duration { return s.cfg.ttl }
	bridge.StateFlags = (*State).flags
	bridge.Freeze = (*State).freeze
	bridge.DictApply = (*Dict).apply
	bridge.DictApplyIfBase = (*Dict).applyIfBase
	bridge.Newest = func(err error) (newest, recovery []byte) {
		if e, ok := errors.AsType[*Error](err); ok {
			return e.newest, e.recovery
		}
		return nil, nil
	}
	bridge.Nested = func(ctx context.Context) context.Context { return context.WithValue(ctx, nestedKey{}, true) }
	bridge.SetServed = func(st *State, endpoint, status string) {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.served, st.endpoint, st.status = true, endpoint, status
	}
	bridge.SetRecovery = func(st *State, b []byte) {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.recovery = b
	}
	bridge.Bundle = func(st *State) []byte {
		st.mu.Lock()
		defer st.mu.Unlock()
		if !st.restored {
			return nil
		}
		return st.sc.bundle
	}
	bridge.SetBundle = func(st *State, b []byte) {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.bundle, st.bundleSet = b, true
	}
	bridge.EmptyState = func(ctx context.Context, want Expect, scope string) *State {
		st := newState(want, scope)
		st.ctx = ctx
		return st
	}
	bridge.RestoreInto = func(s *Sealer, ctx context.Context, token []byte, want Expect, scope string, buf []byte) (*State, error) {
		return s.restore(ctx, token, want, scope, buf)
	}
	bridge.ReleaseData = func(st *State) {
		st.mu.Lock()
		defer st.mu.Unlock()
		st.sc.Data = nil
	}
	bridge.StateKey = stateKey{}
	bridge.Started = func(st *State) time.Time {
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.sc.Started
	}
}
