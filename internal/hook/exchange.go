package hook

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"
	"strconv"
	"sync"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/bridge"
)

// Incoming describes a request arriving at a server hook.
type Incoming struct {
	// SCONEs are all the SCONEs the request carried: the service's own and
	// the passengers for its back ends.
	SCONEs [][]byte
	// Expect names the service serving the request and the caller.
	Expect scone.Expect
	// Scope is where the holder files the SCONEs of this request: the
	// request's own scope, or the one its front end passed on.
	Scope string
	// Plain marks a request from a client without a hook: its state starts
	// empty and is not sealed, and its calls to back ends carry no state.
	Plain bool
	// ResetOnFailure treats SCONEs as a cache: one that does not open (for a
	// reason of its own, not of the server's) starts an empty state, and the
	// reply drops it from the holder.
	ResetOnFailure bool
	// Nested marks a request from a front end serving a request (its
	// scope came with it): the bundle is checked by the front end the
	// client called, which saw every back end's reply; a nested tier's
	// passengers may have moved on through a sibling since its last reply.
	Nested bool
	// Endpoint names the endpoint serving the request (its local address,
	// say), and Operation what it does (the gRPC method, or the HTTP method
	// and path): the SCONE sealed for it records them, with the outcome, in
	// its Endpoint and Status fields (the patent's network endpoint ID and
	// status of the operation), for `scone inspect --keys` and the web view.
	// Empty: the SCONE keeps what it had.
	Endpoint, Operation string
	// Bundles refuses (scone.CodeBundle) a request that carries back ends'
	// SCONEs without the service's own, which bundles them. Off for
	// services whose scope other front ends share (their SCONEs would come
	// along).
	Bundles bool
	// Data, if not nil, is storage the restored state's data is decrypted
	// into when it fits: a pooled buffer, which the state uses until
	// Exchange.Release. The tokens are not kept after Begin returns.
	Data []byte
}

// Exchange is one request served with SCONEs, the part every transport's
// server hook shares: Begin restores the state and prepares the carry for
// back-end calls; Finish seals what changed into the reply.
type Exchange struct {
	sealer   *scone.Sealer
	ctx      exchangeContext
	st       *scone.State
	carry    *Carry
	carried  Carry     // the carry's storage: one allocation per request
	one      [1][]byte // the storage of the reply's SCONEs, most often one
	plain    bool
	service  string     // the service serving the request
	restored bool       // whether its own SCONE was restored
	ownScope string     // the scope of the SCONE restored, for a drop
	reset    *HolderKey // a SCONE that did not open, dropped on reset
	bundle   []byte     // the bundle the restored SCONE recorded
	endpoint string     // Incoming.Endpoint
	op       string     // Incoming.Operation
}

// exchangeContext is the context of a request served: its parent, with the
// request's State and Carry, as scone.NewContext and WithCarry would give,
// without two allocations of context.WithValue.
type exchangeContext struct {
	context.Context
	x *Exchange
}

func (c *exchangeContext) Value(key any) any {
	switch key {
	case stateKey:
		return c.x.st
	case carryKey{}:
		return c.x.carry
	}
	return c.Context.Value(key)
}

// Reply is what a server hook sends back: new versions of SCONEs, and the
// sessions that ended. Apply drops before stores.
type Reply struct {
	SCONEs  [][]byte
	Dropped []HolderKey
}

// Empty reports whether the reply carries nothing.
func (r *Reply) Empty() bool { return len(r.SCONEs) == 0 && len(r.Dropped) == 0 }

// Begin starts serving a request with s: it picks the service's own SCONE
// out of in.SCONEs (the one filed under in.Scope, else the newest) and
// restores the State from it (Sealer.Restore); the others become the
// request's Carry. A SCONE that does not open is an error, never an empty
// state, unless in.ResetOnFailure.
func Begin(s *scone.Sealer, ctx context.Context, in Incoming) (*Exchange, error) {
	x := &Exchange{sealer: s, plain: in.Plain, service: in.Expect.Service, endpoint: in.Endpoint, op: in.Operation}
	x.ctx = exchangeContext{Context: ctx, x: x}
	if in.Plain {
		x.st = emptyState(ctx, s, in)
		x.carried.plain = true
		x.carry = &x.carried
		return x, nil
	}
	own, ownScope, passengers, err := split(in.SCONEs, in.Expect.Service, in.Scope)
	if err != nil {
		return nil, err
	}
	x.ownScope = ownScope
	rctx := ctx
	if in.Nested {
		rctx = bridge.Nested(ctx) // the front end spends the versions (scone's nestedTier)
	}
	x.st, err = restoreInto(s, rctx, own, in.Expect, in.Scope, in.Data)
	if err != nil {
		if !in.ResetOnFailure || !resettable(scone.CodeOf(err)) {
			return nil, err
		}
		x.reset = &HolderKey{Service: in.Expect.Service, Scope: ownScope}
		x.st = emptyState(ctx, s, in)
	} else {
		x.restored = len(own) > 0
	}
	switch {
	case x.restored && !started(x.st).IsZero():
		// A SCONE of format 2 records the bundle its last reply gave.
		es, err := parseBundle(bundleOf(x.st))
		if err != nil {
			return nil, err
		}
		x.bundle = appendBundle(nil, es)
		x.carry = &x.carried
		if err := x.carry.fillBundled(in.Scope, passengers, es, !in.Nested); err != nil {
			return nil, err
		}
	case !x.restored && x.reset == nil && len(passengers) > 0 && in.Bundles && !in.Nested:
		return nil, bundleError(in.Scope, "the request carries back ends' SCONEs but not the SCONE of "+
			strconv.Quote(in.Expect.Service)+" that bundles them")
	default:
		x.carry = &x.carried
		if err := x.carry.fill(in.Scope, passengers); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// emptyState is the State of a request that carries no SCONE: Restore
// without a token, which cannot fail.
func emptyState(ctx context.Context, s *scone.Sealer, in Incoming) *scone.State {
	st, err := s.Restore(ctx, nil, in.Expect, in.Scope)
	if err != nil {
		// A client without a hook, or a reset, to a server that refuses
		// the request (no identity to bind to, a store down): the state is
		// not sealed for the first, and Commit fails the second.
		return newEmptyState(ctx, in.Expect, in.Scope)
	}
	return st
}

// Context returns the request's context, carrying its State and Carry: run
// the handler with it.
func (x *Exchange) Context() context.Context { return &x.ctx }

// State returns the request's state.
func (x *Exchange) State() *scone.State { return x.st }

// Service returns the service ID serving the request.
func (x *Exchange) Service() string { return x.service }

// Restored reports whether the request carried a SCONE of the service that
// was restored: false on the first call of a session, for a client without
// a hook, and when a SCONE that did not open was reset.
func (x *Exchange) Restored() bool { return x.restored }

// Finish seals what the handler left, appending the new SCONE (if any) to
// dst, and returns the reply: the new SCONE, the session's end (State.Drop),
// and what back ends changed during the request. After a failed handler the
// reply is empty, so the holder keeps what it had, unless the handler called
// State.ApplyOnError. An error (for example CodeTooLarge) must fail the
// request: nothing of it is kept.
func (x *Exchange) Finish(dst []byte, failed bool) (Reply, error) {
	var r Reply
	if x.plain || failed && !appliesOnError(x.st) {
		return r, nil
	}
	if x.reset != nil {
		r.Dropped = append(r.Dropped, *x.reset)
	}
	if b := appendBundle(nil, x.carry.bundle()); !bytes.Equal(b, x.bundle) {
		setBundle(x.st, b)
	}
	if x.endpoint != "" || x.op != "" {
		setServed(x.st, x.endpoint, statuses.of(x.op, failed))
	}
	// The back ends' part of the reply goes into the session's mark too (a
	// Sealer with a mark store keeps it with the newest SCONE), so a holder
	// whose reply is lost gets all of it back, not only this tier's SCONE.
	drop, put := x.carry.Changes()
	own := r.Dropped
	if Dropped(x.st) && x.restored {
		own = append(slices.Clip(own), HolderKey{Service: x.service, Scope: x.ownScope})
	}
	if len(own)+len(drop)+len(put) > 0 {
		setRecovery(x.st, appendRecovery(nil, own, drop, put))
	}
	outcome, tok, err := x.sealer.Commit(dst, x.st)
	if err != nil {
		return Reply{}, err
	}
	switch outcome {
	case scone.Updated:
		r.SCONEs = append(x.one[:0], tok)
	case scone.Dropped:
		r.Dropped = append(r.Dropped, HolderKey{Service: x.service, Scope: x.ownScope})
	}
	r.Dropped = append(r.Dropped, drop...)
	r.SCONEs = append(r.SCONEs, put...)
	return r, nil
}

// Release ends the exchange once its reply is sent: the state's data is
// nil from then on, and the storage given in Incoming.Data may be reused.
func (x *Exchange) Release() { releaseData(x.st) }

// split picks a service's own SCONE out of a request's SCONEs (the one filed
// under the request's scope, else the newest) and returns the others, the
// passengers for back ends.
func split(tokens [][]byte, service, scope string) (own []byte, ownScope string, passengers [][]byte, err error) {
	var ownVersion uint64
	var ownScopeB []byte
	for _, tok := range tokens {
		h, err := Peek(tok)
		if err != nil {
			return nil, "", nil, err
		}
		if string(h.Service) != service {
			passengers = append(passengers, tok)
			continue
		}
		inScope, ownInScope := string(h.Scope) == scope, own != nil && string(ownScopeB) == scope
		if own == nil || inScope && !ownInScope || inScope == ownInScope && h.Version > ownVersion {
			own, ownScopeB, ownVersion = tok, h.Scope, h.Version
		}
	}
	if string(ownScopeB) == scope {
		return own, scope, passengers, nil
	}
	return own, string(ownScopeB), passengers, nil
}

// resettable reports whether an error of Restore is about the SCONE itself,
// which ResetOnFailure replaces; a store that is down or full is a problem
// of the server, and fails the request.
func resettable(c scone.Code) bool {
	switch c {
	case scone.CodeMalformed, scone.CodeTampered, scone.CodeExpired, scone.CodeUnknownKey,
		scone.CodeRevoked, scone.CodeTooLarge, scone.CodeWrongClient, scone.CodeRolledBack:
		return true
	}
	return false
}

// Recovery returns the reply a refusal of a spent version carries: the
// session's newest SCONE and what the reply that sealed it carried besides
// (its back ends' new SCONEs and ended sessions), for a holder whose reply
// was lost (see scone.CodeRolledBack); or an empty reply.
func Recovery(err error) Reply {
	tok, rec := bridge.Newest(err)
	r, ok := parseRecovery(rec)
	switch {
	case !ok && tok == nil:
		return Reply{}
	case !ok:
		return Reply{SCONEs: [][]byte{tok}} // the rest is not ours to read: the SCONE alone
	case tok != nil:
		r.SCONEs = append([][]byte{tok}, r.SCONEs...)
	}
	return r
}

// appendRecovery encodes the rest of a reply for the session's mark: the
// ended sessions (count, then service and scope, each length-prefixed),
// then the SCONEs (count, then each length-prefixed), lengths as uvarints.
func appendRecovery(b []byte, drops, moreDrops []HolderKey, put [][]byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(drops)+len(moreDrops)))
	for _, d := range append(slices.Clip(drops), moreDrops...) {
		b = binary.AppendUvarint(b, uint64(len(d.Service)))
		b = append(b, d.Service...)
		b = binary.AppendUvarint(b, uint64(len(d.Scope)))
		b = append(b, d.Scope...)
	}
	b = binary.AppendUvarint(b, uint64(len(put)))
	for _, tok := range put {
		b = binary.AppendUvarint(b, uint64(len(tok)))
		b = append(b, tok...)
	}
	return b
}

// parseRecovery decodes appendRecovery's encoding; ok is false if b is not
// one (then nothing of it is used).
func parseRecovery(b []byte) (r Reply, ok bool) {
	next := func() ([]byte, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) {
			return nil, false
		}
		v := b[k : k+int(n)]
		b = b[k+int(n):]
		return v, true
	}
	count := func() (int, bool) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)) {
			return 0, false
		}
		b = b[k:]
		return int(n), true
	}
	if len(b) == 0 {
		return r, true
	}
	nd, ok := count()
	if !ok {
		return Reply{}, false
	}
	for range nd {
		svc, ok1 := next()
		scope, ok2 := next()
		if !ok1 || !ok2 {
			return Reply{}, false
		}
		r.Dropped = append(r.Dropped, HolderKey{Service: string(svc), Scope: string(scope)})
	}
	np, ok := count()
	if !ok {
		return Reply{}, false
	}
	for range np {
		tok, ok := next()
		if !ok {
			return Reply{}, false
		}
		r.SCONEs = append(r.SCONEs, bytes.Clone(tok))
	}
	return r, len(b) == 0
}

// ApplyReply keeps the SCONEs of a reply in a client's holder: the
// sessions it ended, then its new versions (newest wins). sent are the
// SCONEs the request carried: a reply may only end those sessions, and
// fails with ErrForeignDrop otherwise. With a *scone.Dict the reply is kept
// whole or not at all, and the Dict takes ownership of the tokens; with
// another Holder it is applied one SCONE at a time.
func ApplyReply(h scone.Holder, r *Reply, sent [][]byte) error {
	for _, d := range r.Dropped {
		if !carries(sent, d) {
			return ErrForeignDrop
		}
	}
	if d, ok := h.(*scone.Dict); ok {
		return dictApply(d, r.Dropped, r.SCONEs)
	}
	for _, tok := range r.SCONEs {
		if _, err := Peek(tok); err != nil {
			return err
		}
	}
	for _, d := range r.Dropped {
		h.Delete(d.Service, d.Scope)
	}
	for _, tok := range r.SCONEs {
		if _, err := h.Put(tok); err != nil {
			return err
		}
	}
	return nil
}

// ApplyIfBase applies a reply to d (as ApplyReply) only if d still holds,
// for every SCONE the reply changes, the version the request carried in sent
// (or none, if it carried none). Otherwise another call changed that state
// first, and applying would lose its change: ApplyIfBase fails with
// scone.CodeConflict and changes nothing. Stores shared by concurrent
// requests of one client (relays) use it.
func ApplyIfBase(d *scone.Dict, r *Reply, sent [][]byte) error {
	for _, k := range r.Dropped {
		if !carries(sent, k) {
			return ErrForeignDrop
		}
	}
	return dictApplyIfBase(d, r.Dropped, r.SCONEs, sent)
}

// carries reports whether one of the tokens is the SCONE of key.
func carries(tokens [][]byte, key HolderKey) bool {
	for _, tok := range tokens {
		if h, err := Peek(tok); err == nil && string(h.Service) == key.Service && string(h.Scope) == key.Scope {
			return true
		}
	}
	return false
}

// DictApply deletes the SCONEs of drop from d, then stores the tokens of put
// (newest version wins, as Dict.Put), all at once or not at all; d takes
// ownership of the tokens. If the result does not fit d's bounds it changes
// nothing and fails with scone.CodeExhausted; a malformed token fails it
// with scone.CodeMalformed. Unlike ApplyReply it checks nothing against a
// request: it is for filling a Dict from stored tokens.
func DictApply(d *scone.Dict, drop []HolderKey, put [][]byte) error {
	return dictApply(d, drop, put)
}

// statuses makes the Status a SCONE records, "operation: ok" (or
// "operation: failed", sealed when the handler asked, State.ApplyOnError),
// without an allocation per request: a service has a few operations.
var statuses = statusCache{m: map[string][2]string{}}

type statusCache struct {
	mu sync.RWMutex
	m  map[string][2]string // by operation: ok, failed
}

// maxStatuses bounds the cache: operation names can come from clients (an
// HTTP path), so past this many they are made afresh each time.
const maxStatuses = 1024

func (c *statusCache) of(op string, failed bool) string {
	i := 0
	if failed {
		i = 1
	}
	c.mu.RLock()
	s, ok := c.m[op]
	c.mu.RUnlock()
	if ok {
		return s[i]
	}
	prefix := ""
	if op != "" {
		prefix = op + ": "
	}
	s = [2]string{prefix + "ok", prefix + "failed"}
	c.mu.Lock()
	if len(c.m) < maxStatuses {
		c.m[op] = s
	}
	c.mu.Unlock()
	return s[i]
}
