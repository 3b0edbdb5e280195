package scone

import (
	"context"
	"slices"
	"strconv"
	"time"
)

// Sealer seals and opens the SCONEs of a server. It holds no per-client
// state and is safe for concurrent use; every server replica of a service
// runs one with the same keys and options. The server hooks (sconegrpc,
// sconehttp) take one; without a hook, Restore and Commit are the whole
// server side.
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

// Expect is what a server expects of the SCONE a request carries.
type Expect struct {
	// Service is the service ID the SCONE must belong to.
	Service string
	// Client is the caller's identity, or empty when unknown. A SCONE bound
	// to a client opens only when this matches.
	Client string
}

// opened tells how a SCONE was opened.
type opened struct {
	// keyID is the key that opened it.
	keyID uint32
	// stale is set when that key is no longer the primary: the SCONE should
	// be re-sealed, so the old key can be retired without losing it.
	stale bool
	// rev is the revision of the session's mark, and epoch the service's
	// revocation epoch, read from the mark store.
	rev, epoch uint64
}

// maxFieldLen is the longest Endpoint, Object, Status or Client.
const maxFieldLen = 1<<16 - 1

// seal appends the sealed envelope of sc to dst, under the ring's primary
// key and a fresh nonce. It fails with CodeTooLarge when the envelope would
// be over the size budget, and CodeInternal when sc breaks a limit of the
// format (see SCONE). Without compression, seal allocates nothing when dst
// has room.
func (s *Sealer) seal(dst []byte, sc *SCONE) ([]byte, error) {
	return s.sealNonce(dst, sc, nil, formatV2)
}

// sealNonce is seal, with a fixed nonce when nonce is not nil, in the given
// envelope format (for test vectors; format 1 drops Started and the bundle).
func (s *Sealer) sealNonce(dst []byte, sc *SCONE, nonce *[nonceSize]byte, format byte) ([]byte, error) {
	if err := s.check(sc); err != nil {
		return dst, err
	}
	k := s.ring.state.Load().primary
	flags, data := byte(0), sc.Data
	if len(data) > s.maxData() {
		// open would refuse to inflate it: state that seals must open again.
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
	total := hl + nonceSize + bodyLen(format, sc, len(data)) + tagSize
	if total > s.cfg.maxSize {
		return dst, errCode(CodeTooLarge, "sealed SCONE would be "+strconv.Itoa(total)+
			" bytes, over the budget of "+strconv.Itoa(s.cfg.maxSize))
	}
	dst = slices.Grow(dst, total)
	start := len(dst)
	b := appendHeader(dst, format, k.ID, sc)
	b = b[:len(b)+nonceSize]
	b = appendBody(b, format, flags, sc, data)
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
	case len(sc.Service) == 0 || len(sc.Service) > maxServiceLen:
		return errCode(CodeInternal, "service ID must be 1 to 255 bytes")
	case len(sc.Scope) > maxScopeLen:
		return errCode(CodeInternal, "scope must be at most 255 bytes")
	case len(sc.Endpoint) > maxFieldLen || len(sc.Object) > maxFieldLen ||
		len(sc.Status) > maxFieldLen || len(sc.Client) > maxFieldLen:
		return errCode(CodeTooLarge, "endpoint, object, status and client must each be under 64 KiB")
	case sc.Expires.UnixMilli() <= 0 || sc.IssuedAt.UnixMilli() < 0 || !sc.Started.IsZero() && sc.Started.UnixMilli() <= 0:
		return errCode(CodeInternal, "SCONE needs an expiry, an issue time and a start after 1970")
	case sc.Expires.Sub(sc.IssuedAt) > s.cfg.ttl:
		return errCode(CodeInternal, "SCONE lifetime (expiry minus issue time) is beyond the sealer's TTL")
	}
	return nil
}

// open authenticates and decodes a sealed SCONE into sc, then checks it
// against want and the Sealer's policies. The checks run in this order, and
// the first that fails gives the error's code: size budget (CodeTooLarge,
// before any decryption), layout (CodeMalformed), key (CodeUnknownKey),
// authentication (CodeTampered), service (CodeWrongService), expiry
// (CodeExpired), session age (CodeSessionExpired), client binding
// (CodeWrongClient), then, with a mark store, revocation (CodeRevoked) and
// anti-rollback (CodeRolledBack). It returns the revision of the session's
// mark, for Commit.
//
// open reuses sc.Data's storage; on error sc's contents are unspecified.
func (s *Sealer) open(ctx context.Context, sc *SCONE, token []byte, want Expect) (opened, error) {
	return s.openData(ctx, sc, token, want, true)
}

// openData is open; front moves the data to the start of sc.Data's storage,
// for a caller that opens into the same storage again (without the move,
// each open would leave less room). A caller that opens into storage once,
// as restore does, saves the move.
func (s *Sealer) openData(ctx context.Context, sc *SCONE, token []byte, want Expect, front bool) (opened, error) {
	if len(token) > s.cfg.maxSize {
		return opened{}, errCode(CodeTooLarge, "SCONE of "+strconv.Itoa(len(token))+
			" bytes is over the budget of "+strconv.Itoa(s.cfg.maxSize))
	}
	h, err := parseHeader(token)
	if err != nil {
		return opened{}, err
	}
	now := s.cfg.clock()
	ring := s.ring.state.Load()
	k := ring.opener(h.keyID, now)
	if k == nil {
		return opened{}, errCode(CodeUnknownKey, "no usable key with ID "+strconv.FormatUint(uint64(h.keyID), 10))
	}
	if err := s.decrypt(sc, k, token, &h, front); err != nil {
		return opened{}, err
	}
	setString(&sc.Service, h.service)
	setString(&sc.Scope, h.scope)
	sc.Version = h.version
	sc.Expires = time.UnixMilli(int64(h.expires))

	switch {
	case sc.Service != want.Service:
		return opened{}, errCode(CodeWrongService, "SCONE belongs to another service")
	case !now.Before(sc.Expires):
		return opened{}, errCode(CodeExpired, "SCONE expired")
	case s.cfg.maxAge > 0 && !sc.Started.IsZero() && now.Sub(sc.Started) >= s.cfg.maxAge:
		return opened{}, errCode(CodeSessionExpired, "the session began more than "+
			s.cfg.maxAge.String()+" ago: start a new one")
	case sc.Client != "" && sc.Client != want.Client:
		return opened{}, errCode(CodeWrongClient, "SCONE is bound to another client")
	case s.cfg.bind != bindOff && want.Client == "":
		return opened{}, errNoIdentity
	case s.cfg.bind == bindStrict && sc.Client == "":
		return opened{}, errCode(CodeWrongClient, "SCONE is bound to no client, and this service "+
			"binds every SCONE to its client: start a new session")
	}
	o := opened{keyID: k.ID, stale: k != ring.primary}
	if s.cfg.marks != nil {
		epoch, err := s.epoch(ctx, sc.Service)
		if err != nil {
			return opened{}, err
		}
		if sc.Epoch < epoch {
			return opened{}, errCode(CodeRevoked, "SCONE sealed before the service's current revocation epoch")
		}
		if o.rev, err = s.checkMarks(ctx, sc); err != nil {
			return opened{}, err
		}
		o.epoch = epoch
	}
	return o, nil
}

// errNoIdentity refuses a request without a client identity when the
// Sealer binds SCONEs to clients.
var errNoIdentity = errCode(CodeWrongClient, "the request has no authenticated client identity, "+
	"and this service binds every SCONE to its client")

// maxData is the most data a SCONE may hold: the size budget, or 16 times
// it for data that is compressed.
func (s *Sealer) maxData() int {
	if s.cfg.compressAt > 0 {
		return 16 * s.cfg.maxSize
	}
	return s.cfg.maxSize
}

// decrypt opens the envelope's body into sc, reusing sc.Data's storage, at
// its start if front is set.
func (s *Sealer) decrypt(sc *SCONE, k *ringKey, token []byte, h *headerView, front bool) error {
	nonce := token[h.end : h.end+nonceSize]
	d, cached := k.x.openKey((*[prefixSize]byte)(nonce))
	pt, err := d.aead.Open(sc.Data[:0], nonce[prefixSize:], token[h.end+nonceSize:], token[:h.end])
	if err != nil {
		return errCode(CodeTampered, "SCONE failed authentication")
	}
	if !cached {
		k.x.remember(d)
	}
	flags, data, err := decodeBody(sc, token[0], pt)
	if err != nil {
		return err
	}
	if flags&flagDeflate != 0 {
		sc.Data, err = inflate(nil, data, s.maxData())
		return err
	}
	if !front {
		sc.Data = data
		return nil
	}
	n := copy(pt, data) // move the data to the front of the buffer
	sc.Data = pt[:n]
	return nil
}
