package scone

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// keySize is the size of a key's secret: XAES-256-GCM takes 256-bit keys.
const keySize = 32

// Key is one key of a KeyRing.
type Key struct {
	// ID names the key in every SCONE it seals. IDs are unique in a ring.
	ID uint32
	// Secret is the key material. Generate it with GenerateKey; never
	// derive it from a password or ship it in code.
	Secret [keySize]byte
	// Created is informational: when the key was generated.
	Created time.Time
	// RetireAt, when set, is when the key stops opening SCONEs. Set it to the
	// moment it stopped sealing plus the longest SCONE lifetime (the
	// Sealer's TTL), so no session is lost.
	RetireAt time.Time
}

// String describes the key without its secret.
func (k Key) String() string {
	s := "Key{ID: " + strconv.FormatUint(uint64(k.ID), 10) + ", Secret: REDACTED"
	if !k.RetireAt.IsZero() {
		s += ", RetireAt: " + k.RetireAt.UTC().Format(time.RFC3339)
	}
	return s + "}"
}

// Format prints String for every verb (%v, %+v, %#v, %s, %d, %x, ...), so
// no format string prints the secret.
func (k Key) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// MarshalJSON encodes the key without its secret, so a key that ends up in
// a JSON document or log never carries it. Key files are written by
// WriteKeyFile, which is the only encoder of secrets.
func (k Key) MarshalJSON() ([]byte, error) {
	return json.Marshal(redactedKey{ID: k.ID, Secret: "REDACTED", Created: k.Created, RetireAt: k.RetireAt})
}

// LogValue logs the key without its secret (log/slog).
func (k Key) LogValue() slog.Value {
	attrs := []slog.Attr{slog.Uint64("id", uint64(k.ID)), slog.String("secret", "REDACTED")}
	if !k.Created.IsZero() {
		attrs = append(attrs, slog.Time("created", k.Created))
	}
	if !k.RetireAt.IsZero() {
		attrs = append(attrs, slog.Time("retire_at", k.RetireAt))
	}
	return slog.GroupValue(attrs...)
}

type redactedKey struct {
	ID       uint32    `json:"id"`
	Secret   string    `json:"secret"`
	Created  time.Time `json:"created,omitzero"`
	RetireAt time.Time `json:"retire_at,omitzero"`
}

// GenerateKey returns a new key with the given ID and a secret from
// crypto/rand.
func GenerateKey(id uint32, now time.Time) Key {
	k := Key{ID: id, Created: now.UTC().Truncate(time.Second)}
	rand.Read(k.Secret[:])
	return k
}

// KeyInfo describes a key of a ring without its secret.
type KeyInfo struct {
	ID       uint32    // the key's ID
	Created  time.Time // when it was generated
	RetireAt time.Time // when it stops opening; zero if not retired
	Primary  bool      // whether it seals
}

// KeyRing holds the keys a server seals and opens with. The primary key
// seals; every key that is not past its RetireAt opens. All methods are safe
// for concurrent use, and changes take effect for the next seal or open while
// others are in flight (like crypto/tls's SetSessionTicketKeys). Rotation:
// Add a new key everywhere, Promote it everywhere, Retire the old one with a
// grace of the longest SCONE lifetime, Prune it after that. A key that
// must stop opening at once (a leaked one) is retired at now.
type KeyRing struct {
	mu    sync.Mutex // serialises writers; readers only load state
	state atomic.Pointer[ringState]
}

type ringState struct {
	primary *ringKey
	keys    []*ringKey // sorted by ID
}

type ringKey struct {
	Key
	x *xaesKey
}

// NewKeyRing returns a ring of keys whose primary has ID primary.
func NewKeyRing(primary uint32, keys ...Key) (*KeyRing, error) {
	r := &KeyRing{}
	st, err := buildRing(nil, primary, keys)
	if err != nil {
		return nil, err
	}
	r.state.Store(st)
	return r, nil
}

// buildRing makes a ring state, reusing the prepared keys (and their caches)
// of old where the ID and secret are unchanged.
func buildRing(old *ringState, primary uint32, keys []Key) (*ringState, error) {
	st := &ringState{}
	seen := make(map[uint32]bool, len(keys))
	for _, k := range keys {
		if seen[k.ID] {
			return nil, errCode(CodeInternal, "key ring: duplicate key ID "+strconv.FormatUint(uint64(k.ID), 10))
		}
		seen[k.ID] = true
		rk := &ringKey{Key: k}
		if old != nil {
			if o := old.find(k.ID); o != nil && o.Secret == k.Secret {
				rk.x = o.x
			}
		}
		if rk.x == nil {
			rk.x = newXAESKey(&rk.Secret)
		}
		st.keys = append(st.keys, rk)
		if k.ID == primary {
			st.primary = rk
		}
	}
	if st.primary == nil {
		return nil, errCode(CodeInternal, "key ring: primary key "+strconv.FormatUint(uint64(primary), 10)+" is not in the ring")
	}
	if !st.primary.RetireAt.IsZero() {
		return nil, errCode(CodeInternal, "key ring: the primary key cannot be retired")
	}
	slices.SortFunc(st.keys, func(a, b *ringKey) int { return cmpUint32(a.ID, b.ID) })
	return st, nil
}

func cmpUint32(a, b uint32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (st *ringState) find(id uint32) *ringKey {
	for _, k := range st.keys {
		if k.ID == id {
			return k
		}
	}
	return nil
}

// opener returns the key with the given ID if it may open at now.
func (st *ringState) opener(id uint32, now time.Time) *ringKey {
	k := st.find(id)
	if k == nil || (!k.RetireAt.IsZero() && !now.Before(k.RetireAt)) {
		return nil
	}
	return k
}

func (st *ringState) export() []Key {
	keys := make([]Key, len(st.keys))
	for i, k := range st.keys {
		keys[i] = k.Key
	}
	return keys
}

// update applies f to a copy of the ring's keys and installs the result.
func (r *KeyRing) update(f func(primary *uint32, keys []Key) ([]Key, error)) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.state.Load()
	primary := old.primary.ID
	keys, err := f(&primary, old.export())
	if err != nil {
		return err
	}
	st, err := buildRing(old, primary, keys)
	if err != nil {
		return err
	}
	r.state.Store(st)
	return nil
}

func noKey(id uint32) error {
	return errCode(CodeUnknownKey, "key ring: no key with ID "+strconv.FormatUint(uint64(id), 10))
}

// Add adds a key that opens at once and seals once promoted.
func (r *KeyRing) Add(k Key) error {
	return r.update(func(_ *uint32, keys []Key) ([]Key, error) {
		return append(keys, k), nil
	})
}

// Promote makes the key with the given ID the primary, so it seals from the
// next seal on. The key must be in the ring and not retired.
func (r *KeyRing) Promote(id uint32) error {
	return r.update(func(primary *uint32, keys []Key) ([]Key, error) {
		i := slices.IndexFunc(keys, func(k Key) bool { return k.ID == id })
		if i < 0 {
			return nil, noKey(id)
		}
		*primary = id
		return keys, nil
	})
}

// Retire sets when the key with the given ID stops opening. The primary key
// cannot be retired: promote another key first.
func (r *KeyRing) Retire(id uint32, at time.Time) error {
	return r.update(func(primary *uint32, keys []Key) ([]Key, error) {
		i := slices.IndexFunc(keys, func(k Key) bool { return k.ID == id })
		if i < 0 {
			return nil, noKey(id)
		}
		keys[i].RetireAt = at
		return keys, nil
	})
}

// Prune removes every key whose RetireAt is at or before now and reports how
// many it removed.
func (r *KeyRing) Prune(now time.Time) int {
	n := 0
	_ = r.update(func(_ *uint32, keys []Key) ([]Key, error) {
		out := slices.DeleteFunc(keys, func(k Key) bool {
			return !k.RetireAt.IsZero() && !now.Before(k.RetireAt)
		})
		n = len(keys) - len(out)
		return out, nil
	})
	return n
}

// Replace installs a whole new set of keys at once, for example a key file
// reloaded on SIGHUP. Keys whose ID and secret are unchanged keep their
// caches.
func (r *KeyRing) Replace(primary uint32, keys []Key) error {
	return r.update(func(p *uint32, _ []Key) ([]Key, error) {
		*p = primary
		return slices.Clone(keys), nil
	})
}

// Primary returns the ID of the key that seals.
func (r *KeyRing) Primary() uint32 { return r.state.Load().primary.ID }

// Keys describes the keys of the ring, sorted by ID, without secrets.
func (r *KeyRing) Keys() []KeyInfo {
	st := r.state.Load()
	out := make([]KeyInfo, len(st.keys))
	for i, k := range st.keys {
		out[i] = KeyInfo{ID: k.ID, Created: k.Created, RetireAt: k.RetireAt, Primary: k == st.primary}
	}
	return out
}

// export returns the ring's primary ID and keys, secrets included, for
// writing a key file.
func (r *KeyRing) export() (primary uint32, keys []Key) {
	st := r.state.Load()
	return st.primary.ID, st.export()
}
