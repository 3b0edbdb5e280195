package scone

import (
	"context"
	"slices"
	"sync"
	"time"
)

// State is the "thread context" of the patent: the state of one service for
// the request being served. The server hook restores it from the request's
// SCONE (Sealer.Restore) and puts it in the request's context; the handler
// reads and changes it through FromContext (or a Typed view); after the
// handler the hook seals what changed (Sealer.Commit) into the reply.
//
// A State is safe for concurrent use by the goroutines of one request.
type State struct {
	mu           sync.Mutex
	sc           SCONE
	want         Expect
	scope        string
	restored     bool
	changed      bool
	dropped      bool
	stale        bool
	ttl          time.Duration
	applyOnError bool
	frozen       bool // sealed while the handler goes on: changes panic
}

type stateKey struct{}

// NewContext returns a copy of ctx carrying st.
func NewContext(ctx context.Context, st *State) context.Context {
	return context.WithValue(ctx, stateKey{}, st)
}

// FromContext returns the State of the request ctx belongs to, or false when
// no SCONE hook serves the request.
func FromContext(ctx context.Context) (*State, bool) {
	st, ok := ctx.Value(stateKey{}).(*State)
	return st, ok && st != nil
}

// NewState returns an empty State for a request to want.Service; hooks
// usually get one from Sealer.Restore. scope is where the holder should
// attach the SCONE sealed from this state (see SCONE.Scope).
func NewState(want Expect, scope string) *State {
	return &State{want: want, scope: scope}
}

// Restored reports whether the request carried a SCONE: false on the first
// call of a session.
func (st *State) Restored() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.restored
}

// Service returns the service ID the state belongs to.
func (st *State) Service() string { return st.want.Service }

// Client returns the caller's identity as the hook saw it, or "".
func (st *State) Client() string { return st.want.Client }

// Data returns a copy of the application data (nil on a first call).
func (st *State) Data() []byte {
	st.mu.Lock()
	defer st.mu.Unlock()
	return slices.Clone(st.sc.Data)
}

// SetData replaces the application data with a copy of b.
func (st *State) SetData(b []byte) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.touch()
	st.sc.Data = append(st.sc.Data[:0], b...)
}

// Update replaces the application data with what f returns, given the
// current data, without copying either: f may change the bytes it gets in
// place and return them (or a longer slice). Neither slice may be kept after
// f returns. It is the allocation-free read-modify-write; the State stays
// locked while f runs, so f must not call the State's methods.
func (st *State) Update(f func(data []byte) []byte) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.touch()
	st.sc.Data = f(st.sc.Data)
}

// Object returns the object ID.
func (st *State) Object() string { return st.get(&st.sc.Object) }

// SetObject sets the object ID.
func (st *State) SetObject(s string) { st.set(&st.sc.Object, s) }

// Status returns the status of the current operation.
func (st *State) Status() string { return st.get(&st.sc.Status) }

// SetStatus sets the status of the current operation.
func (st *State) SetStatus(s string) { st.set(&st.sc.Status, s) }

// Endpoint returns the network endpoint ID.
func (st *State) Endpoint() string { return st.get(&st.sc.Endpoint) }

// SetEndpoint sets the network endpoint ID.
func (st *State) SetEndpoint(s string) { st.set(&st.sc.Endpoint, s) }

func (st *State) get(f *string) string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return *f
}

func (st *State) set(f *string, s string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.touch()
	*f = s
}

// touch marks the state changed; st.mu must be held.
func (st *State) touch() {
	if st.frozen {
		panic(errFrozen)
	}
	st.changed = true
	st.dropped = false
}

var errFrozen = NewError(CodeInternal, "state changed after the hook sealed it (the reply's headers were already sent): the change would be lost")

// Freeze makes every later change of the State panic. A hook calls it when
// it has sealed the state but the handler goes on running (an HTTP handler
// that streams its body): a change then could not be sealed, and a panic is
// better than losing it silently.
func (st *State) Freeze() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.frozen = true
}

// Version returns the version of the restored SCONE (0 on a first call).
func (st *State) Version() uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sc.Version
}

// Session returns the session ID (zero on a first call, until committed).
func (st *State) Session() SessionID {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sc.Session
}

// Expires returns the expiry of the restored SCONE (zero on a first call).
func (st *State) Expires() time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sc.Expires
}

// SetTTL gives the SCONE sealed after this request a lifetime of d instead of
// the Sealer's TTL. It can only shorten the TTL; zero restores the default.
func (st *State) SetTTL(d time.Duration) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.ttl = d
}

// Drop ends the session: no SCONE is sealed, and the hook tells the holder
// to delete the one it has. A later change undoes the Drop.
func (st *State) Drop() {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.frozen {
		panic(errFrozen)
	}
	st.dropped = true
	st.changed = false
}

// Changed reports whether the handler changed the state.
func (st *State) Changed() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.changed
}

// Dropped reports whether the handler dropped the state.
func (st *State) Dropped() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.dropped
}

// ApplyOnError makes the hook commit this state even if the handler fails.
// By default a failed call leaves the holder's SCONE as it was, so a
// handler's partial changes before an error are not kept.
func (st *State) ApplyOnError() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.applyOnError = true
}

// AppliesOnError reports whether ApplyOnError was called.
func (st *State) AppliesOnError() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.applyOnError
}
