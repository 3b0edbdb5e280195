package scone

import (
	"encoding/hex"
	"time"
)

// SCONE is a state-caching object: the state one server keeps for one
// client, sealed and handed to a holder (the client, a relay, or cluster
// peers) between requests.
//
// Service, Scope, Version and Expires travel in cleartext, authenticated,
// because holders route, order and evict by them. Every other field is
// sealed and only the servers holding the key can read it.
type SCONE struct {
	// Service is the service ID this state belongs to; a server only opens
	// SCONEs of its own service. 1 to 255 bytes.
	Service string
	// Scope names the target the holder attaches the SCONE to: a path
	// prefix matched like a cookie's path (see ScopeMatches). A front end's
	// back ends seal their SCONEs with the front end's scope, so the client
	// sends them back on its next call to the front end. At most
	// 255 bytes; empty matches every target.
	Scope string
	// Version grows by one at every seal of the session. Holders keep the
	// newest version; anti-rollback compares against it.
	Version uint64
	// Expires is when the SCONE stops opening. Holders evict it then
	// without needing a key. Stored with millisecond precision.
	Expires time.Time

	// Session identifies the session across versions; it is drawn at random
	// when the first SCONE of a session is sealed.
	Session SessionID
	// IssuedAt is when this version was sealed (millisecond precision).
	IssuedAt time.Time
	// Epoch is the service's revocation epoch at sealing; raising the epoch
	// of the service (Sealer.Revoke) revokes every SCONE sealed before.
	Epoch uint64
	// Started is when the session's first SCONE was sealed (millisecond
	// precision), kept across versions: WithMaxSessionAge ends the session
	// that long after. Zero in SCONEs of envelope format 1, which did not
	// record it.
	Started time.Time
	// Endpoint, Object and Status are the thread-context fields of the
	// patent, sealed beside Data and kept across versions. No State method
	// sets them: handlers keep their state in Data.
	//
	// Endpoint is the network endpoint ID of the patent: which endpoint of
	// the service the state is about (for example a port or a shard).
	Endpoint string
	// Object is the object ID of the patent: the object the client works
	// with (for example a cart ID).
	Object string
	// Status is the status of the current operation, app-defined.
	Status string
	// Client binds the SCONE to one client identity (an mTLS peer or a
	// client ID); a bound SCONE only opens for that client. Empty: unbound.
	Client string
	// Data is the application's state, opaque to everything but the
	// service's own handlers.
	Data []byte

	// bundle is what a front end's last reply gave its holder of its back
	// ends' SCONEs, encoded by the hooks (internal/hook).
	bundle []byte
}

// Limits of the envelope. The size budget a Sealer enforces (WithMaxSize)
// is usually far below MaxEnvelopeSize.
const (
	maxServiceLen = 255 // the longest service ID
	maxScopeLen   = 255 // the longest scope
	// MaxEnvelopeSize is the largest envelope any Sealer seals or opens,
	// whatever its configured budget.
	MaxEnvelopeSize = 1 << 20
)

// SessionID identifies one session across the versions of its SCONE.
type SessionID [16]byte

// String returns the ID in hex.
func (id SessionID) String() string { return hex.EncodeToString(id[:]) }

// Header is the cleartext part of a sealed SCONE: what a holder may read
// without a key. ParseHeader reads it; it is authenticated only when the
// SCONE is opened.
type Header struct {
	// Format is the envelope format version; it fixes the AEAD and layout.
	Format uint8
	// KeyID names the key of the ring that sealed the SCONE.
	KeyID uint32
	// Version, Expires, Service and Scope are the SCONE's fields of the
	// same names.
	Version uint64
	Expires time.Time
	Service string
	Scope   string
}

// expired reports whether the SCONE has expired at now.
func (h *Header) expired(now time.Time) bool { return !now.Before(h.Expires) }
