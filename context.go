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

	// With a mark store: the context of the request (Commit writes the
	// mark with it), the revision of the session's mark read at Restore, and
	// the service's revocation epoch.
	ctx   context.Context
	rev   uint64
	epoch uint64
	// bundle is what the hook records of the back ends' SCONEs, to seal
	// (internal/hook); bundleSet tells it was set for this request.
	bundle    []byte
	bundleSet bool
	// nested: a tier called by a front end for a request. Its versions are
	// not spent in the mark store: the front end the client called spends
	// its own, whose SCONE's bundle pins theirs (see nestedTier). recovery
	// is what the hook adds to the session's newest SCONE in the mark, so
	// that a holder whose reply was lost gets back the whole reply.
	nested   bool
	recovery []byte
	// served, if set, is what the hook records of the request in the
	// SCONE it seals: the endpoint that served it and the operation and
	// its outcome (the patent's network endpoint ID and status).
	served           bool
	endpoint, status string
}

type stateKey struct{}

// NewContext returns a copy of ctx carrying st, for FromContext and Typed.
// The hooks call it for every request; call it yourself to run a handler
// without one, in a test say, with a State from Sealer.Restore:
//
//	st, _ := sealer.Restore(ctx, nil, scone.Expect{Service: "cart"}, "/")
//	err := handler(scone.NewContext(ctx, st))
//	// st.Data() is what the handler stored
func NewContext(ctx context.Context, st *State) context.Context {
	return context.WithValue(ctx, stateKey{}, st)
}

// FromContext returns the State of the request ctx belongs to, or false when
// no SCONE hook serves the request.
func FromContext(ctx context.Context) (*State, bool) {
	st, ok := ctx.Value(stateKey{}).(*State)
	return st, ok && st != nil
}

// newState returns an empty State for a request to want.Service. scope is
// where the holder should attach the SCONE sealed from this state (see
// SCONE.Scope).
func newState(want Expect, scope string) *State {
	return &State{want: want, scope: scope}
}

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

// touch marks the state changed; st.mu must be held.
func (st *State) touch() {
	if st.frozen {
		panic(errFrozen)
	}
	st.changed = true
	st.dropped = false
}

var errFrozen = NewError(CodeInternal, "state changed after the hook sealed it (the reply's headers were already sent): the change would be lost")

// freeze makes every later change of the State panic. A hook calls it
// (through internal/bridge) when it has sealed the state but the handler
// goes on running (an HTTP handler that streams its body): a change then
// could not be sealed, and a panic is better than losing it silently.
func (st *State) freeze() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.frozen = true
}

// Version returns the version of the restored SCONE: 0 on the first call
// of a session, when the request carried no SCONE.
func (st *State) Version() uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.sc.Version
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

// flags reports whether the handler changed the state, dropped it, and
// called ApplyOnError; the hooks read them through internal/bridge.
func (st *State) flags() (changed, dropped, applyOnError bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.changed, st.dropped, st.applyOnError
}

// ApplyOnError makes the hook commit this state even if the handler fails.
// By default a failed call leaves the holder's SCONE as it was, so a
// handler's partial changes before an error are not kept.
func (st *State) ApplyOnError() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.applyOnError = true
}
