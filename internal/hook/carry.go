package hook

import (
	"cmp"
	"context"
	"slices"
	"strconv"
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
	refused int                // replies refused for touching another route's SCONEs
}

type carried struct {
	version uint64
	token   []byte
	// routes are the back ends whose replies brought it (a back end's back
	// end's SCONE comes back through it): it goes with calls to its own
	// service and to these. legacy: with every call (a front end whose
	// SCONE records no bundle).
	routes []string
	legacy bool
}

// serves reports whether a SCONE of key held as h goes with, and may be
// changed by, calls on route.
func (h *carried) serves(key HolderKey, route string) bool {
	return h.legacy || key.Service == route || slices.Contains(h.routes, route)
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
// of the passengers' SCONEs (the newest of each service and scope), each
// attached to every call: for a front end whose SCONE records no bundle.
func NewCarry(scope string, passengers [][]byte) (*Carry, error) {
	c := new(Carry)
	if err := c.fill(scope, passengers); err != nil {
		return nil, err
	}
	return c, nil
}

// fill makes the zero Carry c the one NewCarry returns.
func (c *Carry) fill(scope string, passengers [][]byte) error {
	c.scope = scope
	for _, tok := range passengers {
		h, err := Peek(tok)
		if err != nil {
			return err
		}
		k := HolderKey{Service: string(h.Service), Scope: string(h.Scope)}
		if old, ok := c.held[k]; !ok || old.version <= h.Version {
			if c.held == nil {
				c.held = make(map[HolderKey]carried, len(passengers))
			}
			c.held[k] = carried{version: h.Version, token: append([]byte(nil), tok...), legacy: true}
		}
	}
	return nil
}

// fillBundled makes the zero Carry c the carry of a request whose front
// end's SCONE recorded the bundle es. With verify, every passenger it names
// must be there, as it was, or the request fails with scone.CodeBundle;
// passengers it does not name (of another front end sharing the scope) are
// not carried. Without (a front end called by a front end, whose passengers
// a sibling back end may have moved on since), the bundle gives the routes
// of the passengers it names, and the others go only to their own service.
func (c *Carry) fillBundled(scope string, passengers [][]byte, es []bundleEntry, verify bool) error {
	if err := c.fill(scope, passengers); err != nil {
		return err
	}
	if !verify {
		for _, e := range es {
			if h, ok := c.held[e.key]; ok {
				h.routes = e.routes
				c.held[e.key] = h
			}
		}
		for k, h := range c.held {
			h.legacy = false
			c.held[k] = h
		}
		return nil
	}
	all := c.held
	c.held = nil
	for _, e := range es {
		h, ok := all[e.key]
		switch {
		case !ok:
			return bundleError(scope, "the request lacks the SCONE of "+strconv.Quote(e.key.Service)+
				" (version "+strconv.FormatUint(e.version, 10)+") the last reply gave")
		case h.version < e.version:
			return bundleError(scope, "the SCONE of "+strconv.Quote(e.key.Service)+" is version "+
				strconv.FormatUint(h.version, 10)+", older than version "+strconv.FormatUint(e.version, 10)+" the last reply gave")
		case digest(h.token) != e.digest:
			return bundleError(scope, "the SCONE of "+strconv.Quote(e.key.Service)+
				" is not the one the last reply gave")
		}
		if c.held == nil {
			c.held = make(map[HolderKey]carried, len(es))
		}
		h.routes, h.legacy = e.routes, false
		c.held[e.key] = h
	}
	return nil
}

// bundle returns what the carry holds, as the entries of a bundle.
func (c *Carry) bundle() []bundleEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	es := make([]bundleEntry, 0, len(c.held))
	for k, h := range c.held {
		es = append(es, bundleEntry{routes: h.routes, key: k, version: h.version, digest: digest(h.token)})
	}
	slices.SortFunc(es, func(a, b bundleEntry) int {
		return cmp.Or(cmp.Compare(a.key.Service, b.key.Service), cmp.Compare(a.key.Scope, b.key.Scope))
	})
	return es
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

// Attach appends the SCONEs the request holds for a call on route: the
// service ID the call goes to, as far as the caller knows it (a gRPC
// service's name; an HTTP back end's host). Those are the SCONEs of that
// service, and those that came back from calls on the route before (its
// back ends' SCONEs, which it passes on).
func (c *Carry) Attach(dst [][]byte, route string) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, h := range c.held {
		if h.serves(k, route) {
			dst = append(dst, h.token)
		}
	}
	return dst
}

// Apply takes in what a back end on route returned: the sessions it ended,
// and new versions (newest wins). A back end may only end sessions the
// request holds for its route, and only add or update SCONEs that are not
// another route's; anything else fails with ErrForeignDrop or
// ErrForeignSCONE (counted in Refused), and a malformed SCONE with
// scone.CodeMalformed; either way nothing changes.
func (c *Carry) Apply(route string, drop []HolderKey, put [][]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range drop {
		h, ok := c.held[k]
		if !ok {
			c.refused++
			return ErrForeignDrop
		}
		if !h.serves(k, route) {
			c.refused++
			return ErrForeignSCONE
		}
	}
	views := make([]View, len(put))
	for i, tok := range put {
		v, err := Peek(tok)
		if err != nil {
			return err
		}
		k := HolderKey{Service: string(v.Service), Scope: string(v.Scope)}
		if h, ok := c.held[k]; ok && !h.serves(k, route) {
			c.refused++
			return ErrForeignSCONE
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
		old, ok := c.held[k]
		if ok && old.version > v.Version {
			continue
		}
		if c.held == nil {
			c.held = make(map[HolderKey]carried)
		}
		routes := old.routes
		if k.Service != route && !slices.Contains(routes, route) {
			routes = append(slices.Clip(routes), route)
		}
		c.held[k] = carried{version: v.Version, token: append([]byte(nil), put[i]...), routes: routes, legacy: old.legacy}
		if c.changed == nil {
			c.changed = make(map[HolderKey]bool)
		}
		c.changed[k] = true
	}
	return nil
}

// Refused returns how many replies of back ends Apply refused for
// touching another route's SCONEs.
func (c *Carry) Refused() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.refused
}

// ErrForeignSCONE is the error of a back end's reply that adds, updates or
// drops a SCONE that came back from calls on another route: a back end may
// only change its own (and its own back ends').
var ErrForeignSCONE = scone.NewError(scone.CodeMalformed, "the reply changes a SCONE of another back end")

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
