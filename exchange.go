package scone

import "context"

// Incoming describes a request arriving at a server hook.
type Incoming struct {
	// SCONEs are all the SCONEs the request carried: the service's own and
	// the passengers for its back ends.
	SCONEs [][]byte
	// Expect names the service serving the request and the caller.
	Expect Expect
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
}

// Exchange is one request served with SCONEs, the part every transport's
// server hook shares: Sealer.Begin restores the state and prepares the
// carry for back-end calls; Finish seals what changed into the reply.
type Exchange struct {
	sealer   *Sealer
	ctx      context.Context
	st       *State
	carry    *Carry
	plain    bool
	ownScope string     // the scope of the SCONE restored, for a drop
	reset    *HolderKey // a SCONE that did not open, dropped on reset
}

// Reply is what a server hook sends back: new versions of SCONEs, and the
// sessions that ended. Apply drops before stores.
type Reply struct {
	SCONEs  [][]byte
	Dropped []HolderKey
}

// Empty reports whether the reply carries nothing.
func (r *Reply) Empty() bool { return len(r.SCONEs) == 0 && len(r.Dropped) == 0 }

// Begin starts serving a request: it picks the service's own SCONE out of
// in.SCONEs (the one filed under in.Scope, else the newest) and restores the
// State from it; the others become the request's Carry. A SCONE that does
// not open is an error, never an empty state, unless in.ResetOnFailure.
func (s *Sealer) Begin(ctx context.Context, in Incoming) (*Exchange, error) {
	x := &Exchange{sealer: s, plain: in.Plain}
	if in.Plain {
		x.st = NewState(in.Expect, in.Scope)
		x.carry = NewPlainCarry()
		x.ctx = WithCarry(NewContext(ctx, x.st), x.carry)
		return x, nil
	}
	own, ownScope, passengers, err := split(in.SCONEs, in.Expect.Service, in.Scope)
	if err != nil {
		return nil, err
	}
	x.ownScope = ownScope
	x.st, err = s.Restore(ctx, own, in.Expect, in.Scope)
	if err != nil {
		if !in.ResetOnFailure || !resettable(CodeOf(err)) {
			return nil, err
		}
		x.reset = &HolderKey{in.Expect.Service, ownScope}
		x.st = NewState(in.Expect, in.Scope)
	}
	if x.carry, err = NewCarry(in.Scope, passengers); err != nil {
		return nil, err
	}
	x.ctx = WithCarry(NewContext(ctx, x.st), x.carry)
	return x, nil
}

// Context returns the request's context, carrying its State and Carry: run
// the handler with it.
func (x *Exchange) Context() context.Context { return x.ctx }

// State returns the request's state.
func (x *Exchange) State() *State { return x.st }

// Finish seals what the handler left, appending the new SCONE (if any) to
// dst, and returns the reply: the new SCONE, the session's end (State.Drop),
// and what back ends changed during the request. After a failed handler the
// reply is empty, so the holder keeps what it had, unless the handler called
// State.ApplyOnError. An error (for example CodeTooLarge) must fail the
// request: nothing of it is kept.
func (x *Exchange) Finish(dst []byte, failed bool) (Reply, error) {
	var r Reply
	if x.plain || failed && !x.st.AppliesOnError() {
		return r, nil
	}
	if x.reset != nil {
		r.Dropped = append(r.Dropped, *x.reset)
	}
	outcome, tok, err := x.sealer.Commit(dst, x.st)
	if err != nil {
		return Reply{}, err
	}
	switch outcome {
	case Updated:
		r.SCONEs = append(r.SCONEs, tok)
	case Dropped:
		r.Dropped = append(r.Dropped, HolderKey{x.st.Service(), x.ownScope})
	}
	drop, put := x.carry.Changes()
	r.Dropped = append(r.Dropped, drop...)
	r.SCONEs = append(r.SCONEs, put...)
	return r, nil
}

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
func resettable(c Code) bool {
	switch c {
	case CodeMalformed, CodeTampered, CodeExpired, CodeUnknownKey,
		CodeRevoked, CodeTooLarge, CodeWrongClient, CodeRolledBack:
		return true
	}
	return false
}

// ApplyReply keeps the SCONEs of a reply in a client's holder: the
// sessions it ended, then its new versions (newest wins). sent are the
// SCONEs the request carried: a reply may only end those sessions, and
// fails with ErrForeignDrop otherwise. With a BatchHolder (scone.Dict) the
// reply is kept whole or not at all, and the holder takes ownership of the
// tokens; with another Holder it is applied one SCONE at a time.
func ApplyReply(h Holder, r *Reply, sent [][]byte) error {
	for _, d := range r.Dropped {
		if !carries(sent, d) {
			return ErrForeignDrop
		}
	}
	if b, ok := h.(BatchHolder); ok {
		return b.Apply(r.Dropped, r.SCONEs)
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

// carries reports whether one of the tokens is the SCONE of key.
func carries(tokens [][]byte, key HolderKey) bool {
	for _, tok := range tokens {
		if h, err := Peek(tok); err == nil && string(h.Service) == key.Service && string(h.Scope) == key.Scope {
			return true
		}
	}
	return false
}
