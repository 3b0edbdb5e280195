package scone

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"sync"
	"time"
)

// MarkStore is where a Sealer keeps what a SCONE cannot carry itself: the
// newest version sealed of each session (so each version is spent once),
// revoked sessions and client identities, and the services' revocation
// epochs (see WithMarkStore and Sealer.Revoke). It is a key-value store with
// compare-and-set on a revision, shared by every server replica of a
// service: this package's NewMemoryMarkStore for one process, the marks
// package's JetStream store for a fleet. The Sealer owns the keys and the
// values; a store keeps them opaque.
//
// A store that cannot answer must fail with CodeUnavailable (or
// CodeExhausted when full): the Sealer then fails the request, it never
// admits it unchecked. Methods must be safe for concurrent use.
type MarkStore interface {
	// Get returns the value stored under key and its revision, or a nil
	// value and revision 0 when the key holds nothing.
	Get(ctx context.Context, key string) (value []byte, rev uint64, err error)
	// Put stores value under key if the key's revision is still rev (0: the
	// key holds nothing), and fails with CodeConflict, changing nothing,
	// otherwise. The value may be forgotten after expires.
	Put(ctx context.Context, key string, value []byte, rev uint64, expires time.Time) error
}

// Keys of the marks. Keys are made of [0-9a-f.] so that any store (a NATS
// subject, a file name) takes them as they are.
func sessionKey(id SessionID) string { return "s." + hex.EncodeToString(id[:]) }
func clientKey(c string) string      { return "c." + hashHex(c) }
func epochKey(service string) string { return "e." + hashHex(service) }

func hashHex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:16])
}

// sessionMark is the mark of a session: the newest version sealed, and the
// SCONE of that version, given back to a holder whose reply was lost.
type sessionMark struct {
	version uint64
	flags   byte   // markRevoked, markEnded
	newest  []byte // the envelope of version; empty once the session ended
	// recovery is what the hook sent with newest in the same reply (its
	// back ends' new SCONEs and ended sessions), opaque to this package.
	recovery []byte
}

const (
	markRevoked = 1 << 0 // Sealer.Revoke ended the session
	markEnded   = 1 << 1 // State.Drop ended the session
)

// encode lays a mark out as version (8 bytes), flags (1), the length of
// newest (uvarint), newest, then recovery.
func (m *sessionMark) encode() []byte {
	b := make([]byte, 0, 9+binary.MaxVarintLen64+len(m.newest)+len(m.recovery))
	b = binary.BigEndian.AppendUint64(b, m.version)
	b = append(b, m.flags)
	b = binary.AppendUvarint(b, uint64(len(m.newest)))
	b = append(b, m.newest...)
	return append(b, m.recovery...)
}

func decodeSessionMark(b []byte) (sessionMark, error) {
	bad := errCode(CodeInternal, "mark store holds a malformed session mark")
	if len(b) < 10 {
		return sessionMark{}, bad
	}
	m := sessionMark{version: binary.BigEndian.Uint64(b), flags: b[8]}
	n, k := binary.Uvarint(b[9:])
	if k <= 0 || n > uint64(len(b)-9-k) {
		return sessionMark{}, bad
	}
	rest := b[9+k:]
	m.newest, m.recovery = rest[:n], rest[n:]
	return m, nil
}

// decodeUint reads a mark holding one number (an epoch, a revocation time).
func decodeUint(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// Revocation names what Sealer.Revoke ends. Set one field or several.
type Revocation struct {
	// Session ends one session: none of its SCONEs opens again.
	Session SessionID
	// Client ends every session bound to this client identity that started
	// before the revocation ("log out everywhere"). Sessions the client
	// starts afterwards open as usual.
	Client string
	// Service raises the revocation epoch of the service: every SCONE of it
	// sealed so far stops opening.
	Service string
}

// Revoke ends what r names, through the Sealer's mark store (WithMarkStore),
// for every replica that shares the store; it fails with CodeInternal when
// the Sealer has none. Revoked SCONEs fail to open with CodeRevoked. The
// entries are kept for the maximum session age (WithMaxSessionAge) or the
// TTL, whichever is shorter: by then every SCONE they refuse has expired.
func (s *Sealer) Revoke(ctx context.Context, r Revocation) error {
	store := s.cfg.marks
	if store == nil {
		return errCode(CodeInternal, "sealer: revocation needs a mark store (WithMarkStore)")
	}
	now := s.cfg.clock()
	until := now.Add(s.denyLife())
	if r.Session != (SessionID{}) {
		err := s.swap(ctx, sessionKey(r.Session), until, func(old []byte) ([]byte, error) {
			m := sessionMark{}
			if old != nil {
				var err error
				if m, err = decodeSessionMark(old); err != nil {
					return nil, err
				}
			}
			m.flags |= markRevoked
			m.newest = nil
			return m.encode(), nil
		})
		if err != nil {
			return err
		}
	}
	if r.Client != "" {
		at := binary.BigEndian.AppendUint64(nil, uint64(now.UnixMilli()))
		if err := s.swap(ctx, clientKey(r.Client), until, func([]byte) ([]byte, error) { return at, nil }); err != nil {
			return err
		}
	}
	if r.Service != "" {
		err := s.swap(ctx, epochKey(r.Service), now.Add(s.cfg.ttl), func(old []byte) ([]byte, error) {
			return binary.BigEndian.AppendUint64(nil, decodeUint(old)+1), nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// denyLife is how long a revocation must be kept.
func (s *Sealer) denyLife() time.Duration {
	if s.cfg.maxAge > 0 && s.cfg.maxAge < s.cfg.ttl {
		return s.cfg.maxAge
	}
	return s.cfg.ttl
}

// swap replaces the value under key with what f makes of it, retrying
// when another writer came first.
func (s *Sealer) swap(ctx context.Context, key string, expires time.Time, f func(old []byte) ([]byte, error)) error {
	for {
		old, rev, err := s.cfg.marks.Get(ctx, key)
		if err != nil {
			return err
		}
		v, err := f(old)
		if err != nil {
			return err
		}
		err = s.cfg.marks.Put(ctx, key, v, rev, expires)
		if CodeOf(err) != CodeConflict {
			return err
		}
		if ctx.Err() != nil {
			return WrapError(CodeUnavailable, "mark store: "+ctx.Err().Error(), ctx.Err())
		}
	}
}

// nestedKey marks the context of a request that a front end made for a
// request it serves (internal/hook sets it through the bridge).
type nestedKey struct{}

// nestedTier reports whether ctx is a request a front end made for the
// request it serves. Such a tier checks revocations but neither checks nor
// spends versions: if it spent them, a front end whose request failed
// after the back end sealed would leave the client holding a version the
// back end already spent, and the session could not go on. The front end
// the client called spends its version, and its SCONE's bundle pins the
// back ends' versions (internal/hook), so an older back-end SCONE is
// refused there (CodeBundle) and a back end's version is spent with the
// front end's.
func nestedTier(ctx context.Context) bool {
	v, _ := ctx.Value(nestedKey{}).(bool)
	return v
}

// checkMarks checks an opened SCONE against the mark store: the client's
// and the session's revocations, and (but for a nested tier) the session's
// newest version. It returns the revision of the session's mark, for
// Commit's compare-and-set.
func (s *Sealer) checkMarks(ctx context.Context, sc *SCONE) (uint64, error) {
	store := s.cfg.marks
	if sc.Client != "" {
		v, _, err := store.Get(ctx, clientKey(sc.Client))
		if err != nil {
			return 0, err
		}
		if at := decodeUint(v); v != nil && (sc.Started.IsZero() || sc.Started.UnixMilli() <= int64(at)) {
			return 0, errCode(CodeRevoked, "every session of this client started before "+
				time.UnixMilli(int64(at)).UTC().Format(time.RFC3339)+" was revoked")
		}
	}
	v, rev, err := store.Get(ctx, sessionKey(sc.Session))
	if err != nil || v == nil {
		return rev, err // no mark: a session from before the store, or one whose mark expired with it
	}
	m, err := decodeSessionMark(v)
	switch {
	case err != nil:
		return 0, err
	case m.flags&markRevoked != 0:
		return 0, errCode(CodeRevoked, "the session was revoked")
	case nestedTier(ctx):
		return 0, nil // its versions are the front end's to spend
	case m.version == sc.Version:
		return rev, nil
	case m.version < sc.Version:
		return rev, nil // the mark lags (it was lost with the store): it catches up at the next seal
	case m.flags&markEnded != 0 && m.version == sc.Version+1 && len(m.recovery) > 0:
		// The reply that ended the session was lost: give back its end, so
		// the holder drops the session's SCONEs and starts a new one.
		return 0, &Error{code: CodeRolledBack, msg: "version " + strconv.FormatUint(sc.Version, 10) +
			" was spent: the session has ended; the reply ends it at the holder too", recovery: m.recovery}
	case m.flags&markEnded != 0:
		return 0, errCode(CodeRolledBack, "version "+strconv.FormatUint(sc.Version, 10)+
			" was spent: the session has ended")
	case m.version == sc.Version+1 && len(m.newest) > 0:
		// The reply that carried the newest version was lost: give it back,
		// with the refusal, so the holder goes on without repeating the call.
		return 0, &Error{code: CodeRolledBack, msg: "version " + strconv.FormatUint(sc.Version, 10) +
			" was spent; the reply carries the newest SCONE, retry with it", newest: m.newest, recovery: m.recovery}
	}
	return 0, errCode(CodeRolledBack, "version "+strconv.FormatUint(sc.Version, 10)+
		" is older than version "+strconv.FormatUint(m.version, 10)+" already issued")
}

// epoch returns the current revocation epoch of service.
func (s *Sealer) epoch(ctx context.Context, service string) (uint64, error) {
	v, _, err := s.cfg.marks.Get(ctx, epochKey(service))
	return decodeUint(v), err
}

// spend records, with compare-and-set on rev, that the session of sc moved
// on to sc's version (newest is its envelope; nil: the session ended;
// recovery goes with it, see sessionMark).
func (s *Sealer) spend(ctx context.Context, sc *SCONE, rev uint64, newest, recovery []byte, expires time.Time) error {
	m := sessionMark{version: sc.Version, newest: newest, recovery: recovery}
	if newest == nil {
		m.flags = markEnded
	}
	err := s.cfg.marks.Put(ctx, sessionKey(sc.Session), m.encode(), rev, expires)
	if CodeOf(err) == CodeConflict {
		return errCode(CodeConflict, "another request spent version "+strconv.FormatUint(sc.Version-1, 10)+
			" of this session first; this one's change is not kept")
	}
	return err
}

// memoryMarks is the MarkStore of NewMemoryMarkStore.
type memoryMarks struct {
	max   int
	clock func() time.Time

	mu        sync.Mutex
	rev       uint64
	m         map[string]memoryMark
	nextSweep time.Time // no mark expires before this
}

type memoryMark struct {
	value   []byte
	rev     uint64
	expires time.Time
}

// NewMemoryMarkStore returns a MarkStore in the server's memory, for at most
// max live keys (about 100 bytes each, plus the newest SCONE of each
// session), reading time from clock (nil: time.Now). It serves the Sealers
// of one process only (or a fleet behind sticky routing). When full of live
// keys it refuses new ones (CodeExhausted) rather than forgetting a mark,
// which would let a spent version be spent again.
func NewMemoryMarkStore(max int, clock func() time.Time) MarkStore {
	if clock == nil {
		clock = time.Now
	}
	return &memoryMarks{max: max, clock: clock, m: make(map[string]memoryMark)}
}

func (s *memoryMarks) Get(_ context.Context, key string) ([]byte, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.m[key]
	if !ok || !s.clock().Before(m.expires) {
		return nil, 0, nil
	}
	return m.value, m.rev, nil
}

func (s *memoryMarks) Put(_ context.Context, key string, value []byte, rev uint64, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.m[key]
	live := ok && s.clock().Before(m.expires)
	switch {
	case live && m.rev != rev, !live && rev != 0:
		return errCode(CodeConflict, "mark changed")
	case !ok && len(s.m) >= s.max:
		s.sweep()
		if len(s.m) >= s.max {
			return errCode(CodeExhausted, "mark store full of live sessions")
		}
	}
	if live && m.expires.After(expires) {
		expires = m.expires // a mark must outlive every version it guards
	}
	s.rev++
	s.m[key] = memoryMark{value: append([]byte(nil), value...), rev: s.rev, expires: expires}
	if s.nextSweep.IsZero() || expires.Before(s.nextSweep) {
		s.nextSweep = expires
	}
	return nil
}

// sweep drops expired marks; it scans at most once per earliest expiry.
func (s *memoryMarks) sweep() {
	now := s.clock()
	if now.Before(s.nextSweep) {
		return
	}
	var next time.Time
	for k, m := range s.m {
		if !now.Before(m.expires) {
			delete(s.m, k)
		} else if next.IsZero() || m.expires.Before(next) {
			next = m.expires
		}
	}
	s.nextSweep = next
}
