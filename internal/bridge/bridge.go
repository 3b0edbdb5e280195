// Package bridge hands a few unexported operations of package scone to the
// module's own hook packages (internal/hook), so those operations need not
// be exported to every user of scone. It is the idiom of grpc-go's
// internal package: package scone sets each variable in its init, and
// internal/hook type-asserts each once, into a package-level variable of
// the real type. Nothing else may use this package.
//
// Values of scone's own types travel as any, because this package cannot
// import scone (scone imports it); the comment on each variable gives the
// function's real type.
package bridge

import (
	"context"
	"time"
)

// Key names a SCONE in a holder: its service ID and scope.
type Key struct {
	Service string // the service ID
	Scope   string // the scope
}

// View is the cleartext header of a sealed SCONE, read without copying:
// Service and Scope alias the envelope it was read from.
type View struct {
	KeyID   uint32    // the key that sealed the SCONE
	Version uint64    // the SCONE's version
	Expires time.Time // the SCONE's expiry
	Service []byte    // the service ID, aliasing the envelope
	Scope   []byte    // the scope, aliasing the envelope
}

// Peek reads the cleartext header of an envelope without copying; a token
// that is not one fails with the scone error for it.
var Peek func(token []byte) (View, error)

// The operations on scone's own types.
var (
	// Seal is func(s *scone.Sealer, dst []byte, sc *scone.SCONE) ([]byte, error):
	// it appends the envelope of sc, sealed with the primary key.
	Seal any
	// Open is func(s *scone.Sealer, ctx context.Context, sc *scone.SCONE,
	// token []byte, want scone.Expect) (keyID uint32, stale bool, err error):
	// it opens token into sc with every check of Sealer.Restore.
	Open any
	// Now is func(s *scone.Sealer) time.Time: the Sealer's clock.
	Now any
	// TTL is func(s *scone.Sealer) time.Duration: the lifetime a SCONE
	// gets at each seal.
	TTL any
	// StateFlags is func(st *scone.State) (changed, dropped, applyOnError bool).
	StateFlags any
	// Freeze is func(st *scone.State): every later change of st panics.
	Freeze any
	// DictApply is func(d *scone.Dict, drop []Key, put [][]byte) error: the
	// changes of one reply, all or nothing; d takes ownership of put.
	DictApply any
	// DictApplyIfBase is func(d *scone.Dict, drop []Key, put, sent [][]byte) error:
	// DictApply only if d still holds the versions sent carried.
	DictApplyIfBase any
	// Bundle is func(st *scone.State) []byte: the bundle sealed in the
	// restored SCONE (nil on a first call).
	Bundle any
	// SetBundle is func(st *scone.State, b []byte): the bundle to seal; a
	// State with one set is sealed even when unchanged.
	SetBundle any
	// EmptyState is func(ctx context.Context, want scone.Expect, scope string) *scone.State:
	// the State of a request that carries no SCONE, without any check.
	EmptyState any
	// Started is func(st *scone.State) time.Time: the session's start in
	// the restored SCONE (zero on a first call and for format 1).
	Started any
	// RestoreInto is func(s *scone.Sealer, ctx context.Context, token []byte,
	// want scone.Expect, scope string, buf []byte) (*scone.State, error):
	// Sealer.Restore, decrypting the state's data into buf's storage when
	// it has room (a pooled buffer; see ReleaseData).
	RestoreInto any
	// ReleaseData is func(st *scone.State): the hook is done with st, and
	// reuses the buffer given to RestoreInto; st's data is nil from then on.
	ReleaseData any
)

// StateKey is the context key of scone.NewContext, for a context type of
// the hook's own that carries the State without a context.WithValue.
var StateKey any

// Newest returns the newest SCONE of the session a refusal of a spent
// version carries (the holder's reply was lost), and what the hook stored
// with it (SetRecovery), or nils.
var Newest func(err error) (newest, recovery []byte)

// Nested returns a copy of ctx marking a request a front end made for the
// request it serves: the Sealer neither checks nor spends its versions
// (the front end's bundle pins them).
var Nested func(ctx context.Context) context.Context

// SetServed is func(st *scone.State, endpoint, status string): what the
// next seal records in the SCONE's Endpoint and Status fields.
var SetServed any

// SetRecovery is func(st *scone.State, b []byte): what the hook stores in
// the session's mark beside the newest SCONE, given back with it when a
// holder's reply was lost (the reply's other SCONEs and ended sessions).
var SetRecovery any
