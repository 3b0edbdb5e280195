package relay

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
)

// Store keeps the SCONEs of many clients: MemoryStore, JetStreamStore, or
// circulate.Store. (Its Apply takes a type of this module's internals, so
// the stores are the ones of this module.) Implementations must be safe for
// concurrent use by many relays' requests, keep for each (client, service,
// scope) the newest version only, and never return an expired SCONE.
type Store interface {
	// Get returns the live SCONEs held for client whose scope matches target
	// (see scone.ScopeMatches). It fails with scone.CodeExhausted when a new
	// client cannot be taken in, and scone.CodeUnavailable when the store
	// cannot answer.
	Get(ctx context.Context, client, target string) ([][]byte, error)
	// Apply keeps a reply for client: its dropped sessions (which must be
	// among sent, the SCONEs its request carried) and its new versions, all
	// at once or not at all, and only if the store still holds what the
	// request carried (see internal/hook.ApplyIfBase): else another call of the
	// client changed that state first, and Apply fails with
	// scone.CodeConflict rather than lose that call's change.
	Apply(ctx context.Context, client string, r *hook.Reply, sent [][]byte) error
	// Close releases the store's resources.
	Close() error
}

// MemoryConfig bounds a MemoryStore.
type MemoryConfig struct {
	// MaxClients is how many clients the store holds SCONEs for.
	MaxClients int
	// MaxPerClient bounds each client's SCONEs, by count and bytes.
	MaxPerClient      int
	MaxBytesPerClient int
	// Now is the clock expiry is read by (nil: time.Now).
	Now func() time.Time
	// MaxClockSkew is how far Now may run ahead of the servers' clocks:
	// the store keeps and returns a SCONE until its expiry plus
	// MaxClockSkew by Now (see Config.MaxClockSkew). 0 or less tolerates
	// no skew.
	MaxClockSkew time.Duration
}

// DefaultMemoryConfig returns the defaults of a MemoryStore.
func DefaultMemoryConfig() MemoryConfig {
	return MemoryConfig{
		MaxClients:        100_000, // at about 1 KiB per session, 100 MiB
		MaxPerClient:      64,
		MaxBytesPerClient: 1 << 20,
		MaxClockSkew:      DefaultMaxClockSkew,
	}
}

// MemoryStore keeps SCONEs in the relay's memory: a scone.Dict per client.
//
// It is bounded. When it holds MaxClients clients, it first drops the
// clients whose SCONEs have all expired (MaxClockSkew ago); if it is still
// full, a request from a new client is refused with scone.CodeExhausted
// (ResourceExhausted) before it reaches a server, so no acknowledged state
// is ever dropped to make room. Clients already held always get in.
type MemoryStore struct {
	cfg MemoryConfig
	now func() time.Time // the clock of expiry: cfg.Now less cfg.MaxClockSkew

	mu        sync.Mutex
	clients   map[string]*held
	nextSweep time.Time     // a sweep before this would find nothing to drop
	expired   atomic.Uint64 // SCONEs dropped on expiry
}

// held is a client's SCONEs, and when the client was first seen.
type held struct {
	d     *scone.Dict
	since time.Time
}

// admitGrace is how long a client's (empty) place is kept after its first
// request, so the reply of a call let in can always be kept.
const admitGrace = time.Minute

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) *MemoryStore {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &MemoryStore{cfg: cfg, now: expiryClock(cfg.Now, cfg.MaxClockSkew), clients: make(map[string]*held)}
}

// dictLocked returns client's dictionary, making one if there is room;
// m.mu is held.
func (m *MemoryStore) dictLocked(client string) (*scone.Dict, error) {
	if h := m.clients[client]; h != nil {
		return h.d, nil
	}
	now := m.now()
	if len(m.clients) >= m.cfg.MaxClients {
		m.sweepLocked(now)
		if len(m.clients) >= m.cfg.MaxClients {
			return nil, scone.NewError(scone.CodeExhausted, "relay store full: "+
				strconv.Itoa(m.cfg.MaxClients)+" clients with live SCONEs; no new sessions")
		}
	}
	d := scone.NewDict(scone.WithDictLimits(m.cfg.MaxPerClient, m.cfg.MaxBytesPerClient), scone.WithDictClock(m.now))
	m.clients[client] = &held{d: d, since: now}
	return d, nil
}

// sweepLocked drops the clients with no live SCONE (past their first
// minute), at most once per earliest expiry; m.mu is held.
func (m *MemoryStore) sweepLocked(now time.Time) int {
	if now.Before(m.nextSweep) {
		return 0
	}
	n := 0
	next := now.Add(admitGrace)
	for c, h := range m.clients {
		dropped := h.d.Sweep()
		m.expired.Add(uint64(dropped))
		n += dropped
		if left, _ := h.d.Len(); left == 0 && now.Sub(h.since) >= admitGrace {
			delete(m.clients, c)
			continue
		}
		for _, hd := range h.d.Headers() {
			if hd.Expires.Before(next) {
				next = hd.Expires
			}
		}
	}
	m.nextSweep = next
	return n
}

// Get implements Store.
func (m *MemoryStore) Get(_ context.Context, client, target string) ([][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, err := m.dictLocked(client)
	if err != nil {
		return nil, err
	}
	before := d.Expired()
	toks := d.Match(nil, target)
	m.expired.Add(d.Expired() - before)
	return toks, nil
}

// Apply implements Store.
func (m *MemoryStore) Apply(_ context.Context, client string, r *hook.Reply, sent [][]byte) error {
	m.mu.Lock() // so no sweep can drop the dictionary under the update
	defer m.mu.Unlock()
	d, err := m.dictLocked(client)
	if err != nil {
		return err
	}
	before := d.Expired()
	err = hook.ApplyIfBase(d, r, sent)
	m.expired.Add(d.Expired() - before)
	return err
}

// Expired returns how many SCONEs the store has dropped on expiry.
func (m *MemoryStore) Expired() uint64 { return m.expired.Load() }

// Sweep drops every expired SCONE, and the clients left with none (once
// past their first minute). It returns how many SCONEs it dropped.
func (m *MemoryStore) Sweep() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextSweep = time.Time{}
	return m.sweepLocked(m.now())
}

// Len returns how many clients and SCONEs the store holds.
func (m *MemoryStore) Len() (clients, scones int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range m.clients {
		n, _ := h.d.Len()
		scones += n
	}
	return len(m.clients), scones
}

// Close implements Store.
func (m *MemoryStore) Close() error { return nil }
