package scone

import (
	"strconv"
	"sync"
	"time"

	"github.com/scone-project/scone/internal/bridge"
)

// Holder keeps the SCONEs servers entrust to a client (or to a relay on its
// behalf), like a cookie jar: by service and scope, newest version only, until
// they expire. It never opens them: it reads only the cleartext header.
// Implementations must be safe for concurrent use.
type Holder interface {
	// Put stores a sealed SCONE under its (service, scope). An older version
	// than the one held is ignored (stored is false); an equal or newer one
	// replaces it. A holder that is full of live SCONEs refuses with
	// CodeExhausted rather than evicting one.
	Put(token []byte) (stored bool, err error)
	// Match appends to dst the live SCONEs whose scope matches target (see
	// ScopeMatches). The returned tokens must not be modified.
	Match(dst [][]byte, target string) [][]byte
	// Delete removes the SCONE of (service, scope), if any.
	Delete(service, scope string)
}

// holderKey names a SCONE in a holder: its service ID and scope.
type holderKey = bridge.Key

// Defaults of a Dict (see NewDict).
const (
	defaultDictEntries = 4096
	defaultDictBytes   = 64 << 20
)

// Dict is the in-memory Holder: the patent's dictionary of SCONEs, keyed by
// service ID and scope. The client hooks keep their SCONEs in one unless
// given another Holder; a reply that carries several SCONEs (a front end's
// and its back ends') is kept by a Dict whole or not at all, so the tiers'
// states never go out of step.
//
// It is bounded by entries and bytes (see WithDictLimits). When a new SCONE does not fit, Dict
// first drops expired SCONEs; if it still does not fit, Put fails with
// CodeExhausted and nothing is evicted: the holder may be the only copy of
// that state, so the caller must learn that the new state was not kept.
type Dict struct {
	maxEntries int
	maxBytes   int
	clock      func() time.Time

	mu      sync.Mutex
	byScope map[string]map[string]*dictEntry // scope → service → entry
	entries int
	bytes   int
	expired uint64 // SCONEs dropped on expiry
}

type dictEntry struct {
	hdr   Header
	token []byte
}

// DictOption configures a Dict.
type DictOption interface{ applyDict(*Dict) }

type dictOptionFunc func(*Dict)

func (f dictOptionFunc) applyDict(d *Dict) { f(d) }

// WithDictLimits bounds a Dict to entries SCONEs and bytes bytes of them
// (default 4096 SCONEs and 64 MiB).
func WithDictLimits(entries, bytes int) DictOption {
	return dictOptionFunc(func(d *Dict) { d.maxEntries, d.maxBytes = entries, bytes })
}

// WithDictClock sets the clock a Dict expires SCONEs by (default time.Now).
func WithDictClock(now func() time.Time) DictOption {
	return dictOptionFunc(func(d *Dict) { d.clock = now })
}

// NewDict returns an empty Dict.
func NewDict(opts ...DictOption) *Dict {
	d := &Dict{
		maxEntries: defaultDictEntries,
		maxBytes:   defaultDictBytes,
		clock:      time.Now,
		byScope:    make(map[string]map[string]*dictEntry),
	}
	for _, o := range opts {
		o.applyDict(d)
	}
	return d
}

// Put implements Holder. It stores a copy of token.
func (d *Dict) Put(token []byte) (bool, error) {
	return d.put(token, true)
}

// put is Put; without copyToken the Dict keeps token itself.
func (d *Dict) put(token []byte, copyToken bool) (bool, error) {
	v, err := peek(token)
	if err != nil {
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.putLocked(token, v, d.clock(), copyToken)
}

// putLocked is put with d.mu held and the header already read.
func (d *Dict) putLocked(token []byte, v bridge.View, now time.Time, copyToken bool) (bool, error) {
	if !now.Before(v.Expires) {
		return false, nil
	}
	services := d.byScope[string(v.Scope)]
	old := services[string(v.Service)]
	if old != nil && old.hdr.expired(now) {
		d.removeExpired(old.hdr.Scope, old.hdr.Service, old) // an expired entry is no rival
		services, old = d.byScope[string(v.Scope)], nil
	}
	if old != nil && old.hdr.Version > v.Version {
		return false, nil
	}
	// Reuse the held entry's strings: replacing allocates no new key.
	h := Header{Format: token[0], KeyID: v.KeyID, Version: v.Version, Expires: v.Expires}
	if old != nil {
		h.Service, h.Scope = old.hdr.Service, old.hdr.Scope
	} else {
		h.Service, h.Scope = string(v.Service), string(v.Scope)
	}
	grow := len(token)
	if old != nil {
		grow -= len(old.token)
	}
	fits := func() bool {
		return (old != nil || d.entries < d.maxEntries) && d.bytes+grow <= d.maxBytes
	}
	if !fits() {
		d.sweep(now)
		services = d.byScope[h.Scope]
		if old = services[h.Service]; old != nil {
			grow = len(token) - len(old.token)
		} else {
			grow = len(token)
		}
		if !fits() {
			return false, errCode(CodeExhausted, "holder full: "+strconv.Itoa(d.entries)+
				" live SCONEs, "+strconv.Itoa(d.bytes)+" bytes")
		}
	}
	if services == nil {
		services = make(map[string]*dictEntry)
		d.byScope[h.Scope] = services
	}
	if old == nil {
		d.entries++
	}
	d.bytes += grow
	if copyToken {
		token = append([]byte(nil), token...)
	}
	services[h.Service] = &dictEntry{hdr: h, token: token}
	return true, nil
}

// apply deletes the SCONEs of drop, then stores the tokens of put (newest
// version wins, as Put), taking ownership of them: the changes of one reply,
// kept whole or not at all. If the result does not fit the Dict's bounds it
// changes nothing and fails with CodeExhausted; a malformed token fails it
// with CodeMalformed. The client hooks reach it through internal/bridge.
func (d *Dict) apply(drop []holderKey, put [][]byte) error {
	if len(drop) == 0 && len(put) == 1 {
		_, err := d.put(put[0], false) // one SCONE is all or nothing already
		return err
	}
	views, err := peekAll(put)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applyLocked(drop, put, views)
}

func peekAll(toks [][]byte) ([]bridge.View, error) {
	views := make([]bridge.View, len(toks))
	for i, tok := range toks {
		v, err := peek(tok)
		if err != nil {
			return nil, err
		}
		views[i] = v
	}
	return views, nil
}

// applyIfBase applies a reply (drop, then put, as apply) only if the Dict
// still holds, for every SCONE the reply changes, the version the request
// carried in sent (or none, if it carried none). Otherwise another call
// changed that state first, and applying would lose its change: applyIfBase
// fails with CodeConflict and changes nothing. Stores shared by concurrent
// requests of one client (relays) reach it through internal/bridge; the
// caller has checked that sent carried every session drop ends.
func (d *Dict) applyIfBase(drop []holderKey, put, sent [][]byte) error {
	views, err := peekAll(put)
	if err != nil {
		return err
	}
	base := map[holderKey]uint64{}
	for _, tok := range sent {
		if v, err := peek(tok); err == nil {
			base[holderKey{Service: string(v.Service), Scope: string(v.Scope)}] = v.Version
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock()
	current := func(k holderKey) uint64 {
		if e := d.byScope[k.Scope][k.Service]; e != nil && !e.hdr.expired(now) {
			return e.hdr.Version
		}
		return 0
	}
	check := func(k holderKey) error {
		if current(k) != base[k] {
			return errCode(CodeConflict, "another call changed the state of "+strconv.Quote(k.Service)+" first")
		}
		return nil
	}
	for _, k := range drop {
		if err := check(k); err != nil {
			return err
		}
	}
	for _, v := range views {
		if err := check(holderKey{Service: string(v.Service), Scope: string(v.Scope)}); err != nil {
			return err
		}
	}
	return d.applyLocked(drop, put, views)
}

// applyLocked is Apply with d.mu held and the tokens' headers read.
func (d *Dict) applyLocked(drop []holderKey, put [][]byte, views []bridge.View) error {
	now := d.clock()
	plan := func() (entries, bytes int, keep []bool) {
		// What the holder would hold: versions and sizes after the batch.
		type slot struct {
			version uint64
			size    int
		}
		pending := map[holderKey]slot{}
		lookup := func(k holderKey) (slot, bool) {
			if s, ok := pending[k]; ok {
				return s, s.size > 0
			}
			if e := d.byScope[k.Scope][k.Service]; e != nil && !e.hdr.expired(now) {
				return slot{e.hdr.Version, len(e.token)}, true
			}
			return slot{}, false
		}
		entries, bytes = d.entries, d.bytes
		for _, k := range drop {
			if s, ok := lookup(k); ok {
				entries--
				bytes -= s.size
			}
			pending[k] = slot{}
		}
		keep = make([]bool, len(put))
		for i, v := range views {
			if !now.Before(v.Expires) {
				continue
			}
			k := holderKey{Service: string(v.Service), Scope: string(v.Scope)}
			old, ok := lookup(k)
			if ok && old.version > v.Version {
				continue
			}
			if ok {
				bytes -= old.size
			} else {
				entries++
			}
			bytes += len(put[i])
			pending[k] = slot{v.Version, len(put[i])}
			keep[i] = true
		}
		return entries, bytes, keep
	}
	entries, bytes, keep := plan()
	if entries > d.maxEntries || bytes > d.maxBytes {
		d.sweep(now)
		if entries, bytes, keep = plan(); entries > d.maxEntries || bytes > d.maxBytes {
			return errCode(CodeExhausted, "holder full: the reply's SCONEs do not fit "+
				strconv.Itoa(d.maxEntries)+" entries, "+strconv.Itoa(d.maxBytes)+" bytes")
		}
	}
	for _, k := range drop {
		if e := d.byScope[k.Scope][k.Service]; e != nil {
			d.remove(k.Scope, k.Service, e)
		}
	}
	for i, tok := range put {
		if !keep[i] {
			continue
		}
		// It fits (planned above), and it is the newest: store it.
		if _, err := d.putLocked(tok, views[i], now, false); err != nil {
			return err
		}
	}
	return nil
}

// Match implements Holder. It drops the expired SCONEs it comes across.
func (d *Dict) Match(dst [][]byte, target string) [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock()
	for scope := range candidateScopes(target) {
		for service, e := range d.byScope[scope] {
			if e.hdr.expired(now) {
				d.removeExpired(scope, service, e)
				continue
			}
			dst = append(dst, e.token)
		}
	}
	return dst
}

// Get returns the SCONE held for (service, scope), if live.
func (d *Dict) Get(service, scope string) ([]byte, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.byScope[scope][service]
	if e == nil || e.hdr.expired(d.clock()) {
		return nil, false
	}
	return e.token, true
}

// Delete implements Holder.
func (d *Dict) Delete(service, scope string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e := d.byScope[scope][service]; e != nil {
		d.remove(scope, service, e)
	}
}

func (d *Dict) remove(scope, service string, e *dictEntry) {
	delete(d.byScope[scope], service)
	if len(d.byScope[scope]) == 0 {
		delete(d.byScope, scope)
	}
	d.entries--
	d.bytes -= len(e.token)
}

func (d *Dict) removeExpired(scope, service string, e *dictEntry) {
	d.remove(scope, service, e)
	d.expired++
}

// Expired returns how many SCONEs the Dict has dropped on expiry, by Sweep
// or on the way (Match, Put).
func (d *Dict) Expired() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expired
}

// Sweep drops every expired SCONE and returns how many it dropped.
func (d *Dict) Sweep() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sweep(d.clock())
}

func (d *Dict) sweep(now time.Time) int {
	n := 0
	for scope, services := range d.byScope {
		for service, e := range services {
			if e.hdr.expired(now) {
				d.removeExpired(scope, service, e)
				n++
			}
		}
	}
	return n
}

// Len returns the number of SCONEs held, and their total size in bytes.
func (d *Dict) Len() (entries, bytes int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.entries, d.bytes
}

// Tokens returns the live SCONEs held, to save them (a client that stops
// and starts again Puts them back). The tokens must not be modified.
func (d *Dict) Tokens() [][]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clock()
	out := make([][]byte, 0, d.entries)
	for _, services := range d.byScope {
		for _, e := range services {
			if !e.hdr.expired(now) {
				out = append(out, e.token)
			}
		}
	}
	return out
}

// Headers returns the cleartext headers of the SCONEs held, for display.
func (d *Dict) Headers() []Header {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Header, 0, d.entries)
	for _, services := range d.byScope {
		for _, e := range services {
			out = append(out, e.hdr)
		}
	}
	return out
}

// ScopeMatches reports whether a SCONE of the given scope is attached to a
// request for target, by the path-match rule of cookies (RFC 6265 §5.1.4):
// the scope equals the target, or is a prefix of it that ends in '/' or is
// followed in the target by '/'. The empty scope matches every target.
//
// gRPC targets are method paths: the scope "/shop.Gateway/" matches
// "/shop.Gateway/AddItem" but not "/shop.GatewayAdmin/Reset".
func ScopeMatches(scope, target string) bool {
	switch {
	case scope == "" || scope == target:
		return true
	case len(scope) > len(target) || target[:len(scope)] != scope:
		return false
	}
	return scope[len(scope)-1] == '/' || target[len(scope)] == '/'
}

// candidateScopes yields every scope that ScopeMatches target, each once:
// "", the target, and the target cut before and after each '/'.
func candidateScopes(target string) func(yield func(string) bool) {
	return func(yield func(string) bool) {
		if !yield("") {
			return
		}
		for i := 0; i < len(target); i++ {
			if target[i] != '/' {
				continue
			}
			if i > 0 && target[i-1] != '/' && !yield(target[:i]) {
				return
			}
			if i+1 < len(target) && !yield(target[:i+1]) {
				return
			}
		}
		if target != "" {
			yield(target)
		}
	}
}
