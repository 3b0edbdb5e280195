package hook

import (
	"context"
	"sync"

	"github.com/scone-project/scone"
)

// Carry is what a front end holds for the request it is serving: the SCONEs
// of other services that came with the request (its back ends', entrusted to
// the client), and what its back ends send back during the request. A
// server hook puts one in the request's context (see Exchange); a client
// hook that finds one there works for the request instead of its own holder:
// it attaches every SCONE of the carry, so a back end of a back end gets its
// SCONE too, files what the back end returns in the carry, and the front
// end's reply returns what changed, to be kept by the client. Whatever the
// transports on either side, gRPC or HTTP.
//
// A Carry is safe for concurrent use by the goroutines of one request.
type Carry struct {
	scope string // where the client files the SCONEs of this request
	plain bool   // the request came from a client without a hook
	turns Turns[string]

	mu      sync.Mutex
	held    map[HolderKey]carried
	changed map[HolderKey]bool // new versions to send up
	dropped map[HolderKey]bool // sessions ended, to send up
}

type carried struct {
	version uint64
	token   []byte
}

type carryKey struct{}

// WithCarry returns a copy of ctx carrying c.
func WithCarry(ctx context.Context, c *Carry) context.Context {
	return context.WithValue(ctx, carryKey{}, c)
}

// CarryFrom returns the Carry of the request ctx belongs to, if any.
func CarryFrom(ctx context.Context) (*Carry, bool) {
	c, ok := ctx.Value(carryKey{}).(*Carry)
	return c, ok && c != nil
}

// NewCarry returns the carry of a request filed under scope, holding copies
// of the passengers' SCONEs (the newest of each service and scope).
func NewCarry(scope string, passengers [][]byte) (*Carry, error) {
	c := &Carry{scope: scope}
	for _, tok := range passengers {
		h, err := Peek(tok)
		if err != nil {
			return nil, err
		}
		k := HolderKey{Service: string(h.Service), Scope: string(h.Scope)}
		if old, ok := c.held[k]; !ok || old.version <= h.Version {
			if c.held == nil {
				c.held = make(map[HolderKey]carried, len(passengers))
			}
			c.held[k] = carried{h.Version, append([]byte(nil), tok...)}
		}
	}
	return c, nil
}

// NewPlainCarry returns the carry of a request from a client without a
// hook: calls made for it carry no state, and nothing comes back.
func NewPlainCarry() *Carry { return &Carry{plain: true} }

// Plain reports whether the request came from a client without a hook.
func (c *Carry) Plain() bool { return c.plain }

// Scope returns where the client files the SCONEs of this request: back ends
// seal their SCONEs with it.
func (c *Carry) Scope() string { return c.scope }

// Take serialises the request's calls by group (see Turns).
func (c *Carry) Take(ctx context.Context, group string) (func(), error) {
	return c.turns.Take(ctx, group)
}

// Attach appends every SCONE the request holds: a front end does not know
// which back end serves which service, and each back end takes its own.
func (c *Carry) Attach(dst [][]byte) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.held {
		dst = append(dst, h.token)
	}
	return dst
}

// Apply takes in what a back end returned: the sessions it ended, and new
// versions (newest wins). A back end may only end sessions the request
// holds; a drop of anything else, or a malformed SCONE, fails with
// scone.CodeMalformed and changes nothing.
func (c *Carry) Apply(drop []HolderKey, put [][]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range drop {
		if _, ok := c.held[k]; !ok {
			return ErrForeignDrop
		}
	}
	views := make([]View, len(put))
	for i, tok := range put {
		v, err := Peek(tok)
		if err != nil {
			return err
		}
		views[i] = v
	}
	for _, k := range drop {
		delete(c.held, k)
		delete(c.changed, k)
		if c.dropped == nil {
			c.dropped = make(map[HolderKey]bool)
		}
		c.dropped[k] = true
	}
	for i, v := range views {
		k := HolderKey{Service: string(v.Service), Scope: string(v.Scope)}
		if old, ok := c.held[k]; ok && old.version > v.Version {
			continue
		}
		if c.held == nil {
			c.held = make(map[HolderKey]carried)
		}
		c.held[k] = carried{v.Version, append([]byte(nil), put[i]...)}
		if c.changed == nil {
			c.changed = make(map[HolderKey]bool)
		}
		c.changed[k] = true
	}
	return nil
}

// ErrForeignDrop is the error of a reply that ends a session its call did
// not carry: no server may delete state it was not given.
var ErrForeignDrop = scone.NewError(scone.CodeMalformed, "the reply ends a session the call did not carry")

// Changes returns what the front end's reply must carry up: the sessions
// its back ends ended, and the new versions they sealed. A session dropped
// and then started again is in both.
func (c *Carry) Changes() (drop []HolderKey, put [][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.dropped {
		drop = append(drop, k)
	}
	for k := range c.changed {
		put = append(put, c.held[k].token)
	}
	return drop, put
}
