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
	epochs          *Epochs
	highWater       HighWater
	bind            bool
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

// WithEpochs turns on revocation by epoch (see Epochs).
func WithEpochs(e *Epochs) Option { return optionFunc(func(c *config) { c.epochs = e }) }

// WithHighWater turns on anti-rollback through h (see HighWater). It costs a
// call to h on every open that carries a SCONE.
func WithHighWater(h HighWater) Option { return optionFunc(func(c *config) { c.highWater = h }) }

// WithClientBinding binds every new session's SCONE to the identity of the
// client that started it (Expect.Client), so a stolen SCONE fails with
// CodeWrongClient for anyone else.
func WithClientBinding() Option { return optionFunc(func(c *config) { c.bind = true }) }

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
