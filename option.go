package scone

import (
	"strconv"
	"time"
)

// Option configures a Sealer.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// Defaults of a Sealer.
const (
	// DefaultTTL is how long a SCONE lives after its last seal.
	DefaultTTL = 24 * time.Hour
	// DefaultMaxSize is the size budget of a sealed SCONE, in bytes.
	DefaultMaxSize = 64 << 10
)

type config struct {
	ttl             time.Duration
	maxSize         int
	clock           func() time.Time
	marks           MarkStore
	maxAge          time.Duration
	bind            bindMode
	compressAt      int
	resealUnchanged bool
}

func defaultConfig() config {
	return config{
		ttl:             DefaultTTL,
		maxSize:         DefaultMaxSize,
		clock:           time.Now,
		resealUnchanged: true,
	}
}

func (c *config) validate() error {
	switch {
	case c.ttl < time.Millisecond:
		return errCode(CodeInternal, "sealer: TTL must be at least 1ms, got "+c.ttl.String())
	case c.maxSize < envelopeMin || c.maxSize > MaxEnvelopeSize:
		return errCode(CodeInternal, "sealer: max size must be between "+strconv.Itoa(envelopeMin)+
			" and "+strconv.Itoa(MaxEnvelopeSize)+" bytes, got "+strconv.Itoa(c.maxSize))
	case c.clock == nil:
		return errCode(CodeInternal, "sealer: nil clock")
	case c.maxAge < 0:
		return errCode(CodeInternal, "sealer: negative maximum session age")
	case c.compressAt < 0:
		return errCode(CodeInternal, "sealer: negative compression threshold")
	}
	return nil
}

// WithTTL sets the lifetime a SCONE gets at each seal (default DefaultTTL).
// It is also the longest lifetime: a handler may shorten it (State.SetTTL),
// never lengthen it, so a retired key can be removed TTL after it stopped
// sealing.
func WithTTL(d time.Duration) Option { return optionFunc(func(c *config) { c.ttl = d }) }

// WithMaxSize sets the size budget, in bytes, of a sealed SCONE (default
// DefaultMaxSize). Sealing over it fails with CodeTooLarge (after
// compression, if enabled); opening checks it before any decryption. Lower
// it only after the SCONEs sealed under the higher budget have expired.
func WithMaxSize(n int) Option { return optionFunc(func(c *config) { c.maxSize = n }) }

// WithClock sets the clock the Sealer reads time from (default time.Now).
func WithClock(now func() time.Time) Option { return optionFunc(func(c *config) { c.clock = now }) }

// WithMarkStore keeps the marks of the Sealer's sessions in store (see
// MarkStore), shared by every replica of the service, and turns on:
//
//   - each version spent once: Commit records the session's newest version
//     with compare-and-set, so of concurrent requests carrying the same
//     version exactly one seals a successor (the others fail with
//     CodeConflict and change nothing), and a SCONE older than the newest
//     issued fails with CodeRolledBack. A holder that presents the version
//     just before the newest (its reply was lost) gets the newest SCONE back
//     with the refusal, and goes on with it;
//   - Sealer.Revoke, of a session, a client's sessions, or a service.
//
// It costs, per request, a read of the session's and the service's marks
// (and of the client's, for a bound SCONE) and, per seal, a write. A store
// that cannot answer fails the request with CodeUnavailable.
func WithMarkStore(store MarkStore) Option { return optionFunc(func(c *config) { c.marks = store }) }

// WithMaxSessionAge ends every session d after its first seal, however
// often it was re-sealed since: its SCONEs fail with CodeSessionExpired.
// SCONEs of envelope format 1, which do not record the session's start,
// start counting at their first seal under this version.
func WithMaxSessionAge(d time.Duration) Option {
	return optionFunc(func(c *config) { c.maxAge = d })
}

// bindMode is how WithClientBinding binds SCONEs to clients.
type bindMode uint8

const (
	bindOff      bindMode = iota
	bindStrict            // every SCONE must be bound to the caller
	bindFirstUse          // an unbound SCONE is bound to its next caller
)

// WithClientBinding binds every SCONE to the identity of its client
// (Expect.Client, from the hook's WithClientIdentity), so a stolen SCONE
// fails with CodeWrongClient for anyone else. It fails closed: a request
// without an identity fails with CodeWrongClient, and so does an unbound
// SCONE (sealed before binding was on), unless bindOnFirstUse is set: then
// an unbound SCONE is bound to the first authenticated client that
// presents it, at its next seal, which is right only while the SCONEs
// sealed before binding are in their owners' hands.
func WithClientBinding(bindOnFirstUse bool) Option {
	return optionFunc(func(c *config) {
		c.bind = bindStrict
		if bindOnFirstUse {
			c.bind = bindFirstUse
		}
	})
}

// WithCompression compresses the data of SCONEs of at least minSize bytes
// with DEFLATE when that makes them smaller. Compression can leak, through
// the sealed size, how much attacker-chosen data resembles secret data kept
// beside it (as in CRIME); enable it only for state that mixes no secrets
// with attacker input. Opening inflates at most 16 times the size budget.
func WithCompression(minSize int) Option {
	return optionFunc(func(c *config) { c.compressAt = minSize })
}

// WithResealUnchanged sets whether Commit re-seals a SCONE the handler did
// not change (default true). Re-sealing gives every reply fresh bytes, so a
// holder's requests cannot be linked by their SCONE, and slides the expiry;
// turning it off saves the seal and the bytes on the wire of read-only calls.
// A stale SCONE (sealed by a non-primary key, or past half its lifetime) is
// re-sealed either way.
func WithResealUnchanged(on bool) Option {
	return optionFunc(func(c *config) { c.resealUnchanged = on })
}
