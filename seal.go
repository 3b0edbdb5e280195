package scone

import (
	"context"
	"slices"
	"strconv"
	"time"
)

// Sealer seals and opens the SCONEs of a server. It holds no per-client
// state and is safe for concurrent use; every server replica of a service
// runs one with the same keys and options.
type Sealer struct {
	ring *KeyRing
	cfg  config
}

// NewSealer returns a Sealer that seals with ring's primary key and opens
// with every key of the ring.
func NewSealer(ring *KeyRing, opts ...Option) (*Sealer, error) {
	if ring == nil {
		return nil, errCode(CodeInternal, "sealer: nil key ring")
	}
	s := &Sealer{ring: ring, cfg: defaultConfig()}
	for _, o := range opts {
		o.apply(&s.cfg)
	}
	if err := s.cfg.validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// KeyRing returns the ring the Sealer uses; rotate keys through it.
func (s *Sealer) KeyRing() *KeyRing { return s.ring }

// TTL returns the lifetime a SCONE gets at each seal.
func (s *Sealer) TTL() time.Duration { return s.cfg.ttl }

// MaxSize returns the size budget of a sealed SCONE.
func (s *Sealer) MaxSize() int { return s.cfg.maxSize }

// Now returns the Sealer's clock reading.
func (s *Sealer) Now() time.Time { return s.cfg.clock() }

// Expect is what a server expects of the SCONE a request carries.
type Expect struct {
	// Service is the service ID the SCONE must belong to.
	Service string
	// Client is the caller's identity, or empty when unknown. A SCONE bound
	// to a client opens only when this matches.
	Client string
}

// Opened tells how a SCONE was opened.
type Opened struct {
	// KeyID is the key that opened it.
	KeyID uint32
	// Stale is set when that key is no longer the primary: the SCONE should
	// be re-sealed, so the old key can be retired without losing it.
	Stale bool
}

// Seal appends the sealed envelope of sc to dst, under the ring's primary
// key and a fresh nonce. It fails with CodeTooLarge when the envelope would
// be over the size budget, and CodeInternal when sc breaks a limit of the
// format (see SCONE). Without compression, Seal allocates nothing when dst
// has room.
func (s *Sealer) Seal(dst []byte, sc *SCONE) ([]byte, error) {
	return s.seal(dst, sc, nil)
}

// seal is Seal, with a fixed nonce when nonce is not nil (for test vectors).
func (s *Sealer) seal(dst []byte, sc *SCONE, nonce *[nonceSize]byte) ([]byte, error) {
	if err := s.check(sc); err != nil {
		return dst, err
	}
	k := s.ring.state.Load().primary
	flags, data := byte(0), sc.Data
	if len(data) > s.maxData() {
		// Open would refuse to inflate it: state that seals must open again.
		return dst, errCode(CodeTooLarge, "state of "+strconv.Itoa(len(data))+
			" bytes is over the limit of "+strconv.Itoa(s.maxData()))
	}
	var zbuf []byte
	if s.cfg.compressAt > 0 && len(data) >= s.cfg.compressAt {
		zbuf = deflate(nil, data)
		if len(zbuf) < len(data) {
			flags, data = flagDeflate, zbuf
		}
	}
	hl := headerLen(sc)
	total := hl + nonceSize + bodyLen(sc, len(data)) + tagSize
	if total > s.cfg.maxSize {
		return dst, errCode(CodeTooLarge, "sealed SCONE would be "+strconv.Itoa(total)+
			" bytes, over the budget of "+strconv.Itoa(s.cfg.maxSize))
	}
	dst = slices.Grow(dst, total)
	start := len(dst)
	b := appendHeader(dst, k.ID, sc)
	b = b[:len(b)+nonceSize]
	b = appendBody(b, flags, sc, data)
	var out []byte
	if nonce == nil {
		out = k.x.sealInPlace(b[start:], hl, hl+nonceSize)
	} else {
		out = k.x.sealWithNonce(b[start:], hl, hl+nonceSize, nonce)
	}
	return b[:start+len(out)], nil
}

func (s *Sealer) check(sc *SCONE) error {
	switch {
	case len(sc.Service) == 0 || len(sc.Service) > MaxServiceLen:
		return errCode(CodeInternal, "service ID must be 1 to 255 bytes")
	case len(sc.Scope) > MaxScopeLen:
		return errCode(CodeInternal, "scope must be at most 255 bytes")
	case len(sc.Endpoint) > MaxFieldLen || len(sc.Object) > MaxFieldLen ||
		len(sc.Status) > MaxFieldLen || len(sc.Client) > MaxFieldLen:
		return errCode(CodeTooLarge, "endpoint, object, status and client must each be under 64 KiB")
	case sc.Expires.UnixMilli() <= 0 || sc.IssuedAt.UnixMilli() < 0:
		return errCode(CodeInternal, "SCONE needs an expiry and an issue time after 1970")
	case sc.Expires.Sub(sc.IssuedAt) > s.cfg.ttl:
		return errCode(CodeInternal, "SCONE lifetime (expiry minus issue time) is beyond the sealer's TTL")
	}
	return nil
}

// Open authenticates and decodes a sealed SCONE into sc, then checks it
// against want and the Sealer's policies. The checks run in this order, and
// the first that fails gives the error's code: size budget (CodeTooLarge,
// before any decryption), layout (CodeMalformed), key (CodeUnknownKey),
// authentication (CodeTampered), service (CodeWrongService), expiry
// (CodeExpired), revocation epoch (CodeRevoked), client binding
// (CodeWrongClient), anti-rollback (CodeRolledBack).
//
// Open reuses sc.Data's storage; on error sc's contents are unspecified.
func (s *Sealer) Open(ctx context.Context, sc *SCONE, token []byte, want Expect) (Opened, error) {
	if len(token) > s.cfg.maxSize {
		return Opened{}, errCode(CodeTooLarge, "SCONE of "+strconv.Itoa(len(token))+
			" bytes is over the budget of "+strconv.Itoa(s.cfg.maxSize))
	}
	h, err := parseHeader(token)
	if err != nil {
		return Opened{}, err
	}
	now := s.cfg.clock()
	ring := s.ring.state.Load()
	k := ring.opener(h.keyID, now)
	if k == nil {
		return Opened{}, errCode(CodeUnknownKey, "no usable key with ID "+strconv.FormatUint(uint64(h.keyID), 10))
	}
	if err := s.decrypt(sc, k, token, &h); err != nil {
		return Opened{}, err
	}
	setString(&sc.Service, h.service)
	setString(&sc.Scope, h.scope)
	sc.Version = h.version
	sc.Expires = time.UnixMilli(int64(h.expires))

	switch {
	case sc.Service != want.Service:
		return Opened{}, errCode(CodeWrongService, "SCONE belongs to another service")
	case !now.Before(sc.Expires):
		return Opened{}, errCode(CodeExpired, "SCONE expired")
	case s.cfg.epochs != nil && sc.Epoch < s.cfg.epochs.Epoch(sc.Service):
		return Opened{}, errCode(CodeRevoked, "SCONE sealed before the service's current revocation epoch")
	case sc.Client != "" && sc.Client != want.Client:
		return Opened{}, errCode(CodeWrongClient, "SCONE is bound to another client")
	}
	if s.cfg.highWater != nil {
		if err := s.cfg.highWater.Admit(ctx, sc.Session, sc.Version, sc.Expires); err != nil {
			return Opened{}, err
		}
	}
	return Opened{KeyID: k.ID, Stale: k != ring.primary}, nil
}

// maxData is the most data a SCONE may hold: the size budget, or 16 times
// it for data that is compressed.
func (s *Sealer) maxData() int {
	if s.cfg.compressAt > 0 {
		return 16 * s.cfg.maxSize
	}
	return s.cfg.maxSize
}

// decrypt opens the envelope's body into sc, reusing sc.Data's storage.
func (s *Sealer) decrypt(sc *SCONE, k *ringKey, token []byte, h *headerView) error {
	nonce := token[h.end : h.end+nonceSize]
	d, cached := k.x.openKey((*[prefixSize]byte)(nonce))
	pt, err := d.aead.Open(sc.Data[:0], nonce[prefixSize:], token[h.end+nonceSize:], token[:h.end])
	if err != nil {
		return errCode(CodeTampered, "SCONE failed authentication")
	}
	if !cached {
		k.x.remember(d)
	}
	flags, data, err := decodeBody(sc, pt)
	if err != nil {
		return err
	}
	if flags&flagDeflate != 0 {
		sc.Data, err = inflate(nil, data, s.maxData())
		return err
	}
	n := copy(pt, data) // move the data to the front of the buffer
	sc.Data = pt[:n]
	return nil
}
