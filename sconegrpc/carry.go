package sconegrpc

import (
	"context"
	"sync"

	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
)

// carry is what a front end holds for the request it is serving: the
// SCONEs of other services that came with the request (its back ends',
// entrusted to the client), and what its back ends send back during the
// request. Calls to back ends made with the request's context attach all of
// them, so a back end of a back end gets its SCONE too; the front end's reply
// returns what changed, to be kept by the client.
type carry struct {
	scope string // where the client files the SCONEs of this request
	plain bool   // the request came from a client without the hook
	locks keyedMutex[string]

	mu      sync.Mutex
	held    map[holderKey]held
	changed map[holderKey]bool // new versions to send up
	dropped map[holderKey]bool // sessions ended, to send up
}

type holderKey struct{ service, scope string }

type held struct {
	version uint64
	token   []byte
}

type carryKey struct{}

func withCarry(ctx context.Context, c *carry) context.Context {
	return context.WithValue(ctx, carryKey{}, c)
}

func carryFrom(ctx context.Context) *carry {
	c, _ := ctx.Value(carryKey{}).(*carry)
	return c
}

// newCarry makes the carry of a request from its passengers' SCONEs.
func newCarry(scope string, passengers [][]byte) (*carry, error) {
	c := &carry{scope: scope}
	if len(passengers) > 0 {
		c.held = make(map[holderKey]held, len(passengers))
	}
	for _, tok := range passengers {
		h, err := scone.Peek(tok)
		if err != nil {
			return nil, err
		}
		k := holderKey{string(h.Service), string(h.Scope)}
		if old, ok := c.held[k]; !ok || old.version <= h.Version {
			// A copy: tok aliases the request message, which the handler owns.
			c.held[k] = held{h.Version, append([]byte(nil), tok...)}
		}
	}
	return c, nil
}

func (c *carry) lock(ctx context.Context, key string) (func(), error) {
	return c.locks.lock(ctx, key)
}

// attach appends every SCONE the request holds: the front end does not know
// which back end serves which service, and each back end takes its own.
func (c *carry) attach(dst [][]byte, _ string) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.held {
		dst = append(dst, h.token)
	}
	return dst
}

func (c *carry) requestScope() string { return c.scope }

// apply takes in what a back end returned. A back end may only end the
// sessions the request holds: a drop of anything else fails the call.
func (c *carry) apply(f *frame, _ [][]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range f.dropped {
		if _, ok := c.held[holderKey(d)]; !ok {
			return errForeignDrop
		}
	}
	for _, tok := range f.scones {
		if _, err := scone.Peek(tok); err != nil {
			return err
		}
	}
	for _, d := range f.dropped {
		k := holderKey(d)
		delete(c.held, k)
		delete(c.changed, k)
		if c.dropped == nil {
			c.dropped = make(map[holderKey]bool)
		}
		c.dropped[k] = true
	}
	for _, tok := range f.scones {
		h, err := scone.Peek(tok)
		if err != nil {
			return err
		}
		k := holderKey{string(h.Service), string(h.Scope)}
		if old, ok := c.held[k]; ok && old.version > h.Version {
			continue
		}
		if c.held == nil {
			c.held = make(map[holderKey]held)
		}
		c.held[k] = held{h.Version, append([]byte(nil), tok...)}
		if c.changed == nil {
			c.changed = make(map[holderKey]bool)
		}
		c.changed[k] = true
	}
	return nil
}

var errForeignDrop = scone.NewError(scone.CodeMalformed, "the reply ends a session the call did not carry")

// changes returns what the request's reply must carry up: the new versions
// back ends sealed, and the sessions they dropped (drops first: a session
// dropped and then started again is sent as both).
func (c *carry) changes(f *frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.dropped {
		f.dropped = append(f.dropped, drop(k))
	}
	for k := range c.changed {
		f.scones = append(f.scones, c.held[k].token)
	}
}

// keyedMutex serialises calls by key, waiting no longer than the caller's
// context allows. A key's entry lives only while someone holds or waits for
// it, so keys may be as many as sessions.
type keyedMutex[K comparable] struct {
	mu sync.Mutex
	m  map[K]*turn
}

type turn struct {
	ch   chan struct{}
	refs int
}

// turns recycles turns: most calls find no one ahead of them, and an idle
// key's turn is freed at once.
var turns = sync.Pool{New: func() any { return &turn{ch: make(chan struct{}, 1)} }}

func (k *keyedMutex[K]) lock(ctx context.Context, key K) (func(), error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[K]*turn)
	}
	t := k.m[key]
	if t == nil {
		t = turns.Get().(*turn)
		k.m[key] = t
	}
	t.refs++
	k.mu.Unlock()
	select {
	case t.ch <- struct{}{}:
		return func() {
			<-t.ch
			k.leave(key, t)
		}, nil
	case <-ctx.Done():
		k.leave(key, t)
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (k *keyedMutex[K]) leave(key K, t *turn) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if t.refs--; t.refs == 0 {
		delete(k.m, key)
		turns.Put(t) // empty: its holder took its token back before leaving
	}
}
