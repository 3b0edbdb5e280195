// Package hook is the part of a SCONE transport hook that does not depend on
// the transport: the server side of a request (Begin, Exchange.Finish), the
// Carry a front end's calls to its back ends go through, the client side of
// a reply (ApplyReply), and the turns calls take. The module's hooks
// (sconegrpc, sconehttp), relay and cluster use it; it is internal because
// only they do: a handler author needs package scone alone.
//
// It also gives those packages, and their tests, the few operations of
// package scone that are not exported (Seal, Open, Peek, …), through
// internal/bridge.
package hook

import (
	"context"
	"encoding/base64"
	"strings"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/bridge"
)

// HolderKey names a SCONE in a holder: its service ID and scope.
type HolderKey = bridge.Key

// View is the cleartext header of a sealed SCONE, whose Service and Scope
// alias the envelope it was read from (see Peek).
type View = bridge.View

// The operations package scone hands over (see internal/bridge), asserted
// to their real types once.
var (
	seal            = bridge.Seal.(func(*scone.Sealer, []byte, *scone.SCONE) ([]byte, error))
	open            = bridge.Open.(func(*scone.Sealer, context.Context, *scone.SCONE, []byte, scone.Expect) (uint32, bool, error))
	now             = bridge.Now.(func(*scone.Sealer) time.Time)
	ttl             = bridge.TTL.(func(*scone.Sealer) time.Duration)
	stateFlags      = bridge.StateFlags.(func(*scone.State) (bool, bool, bool))
	freeze          = bridge.Freeze.(func(*scone.State))
	dictApply       = bridge.DictApply.(func(*scone.Dict, []HolderKey, [][]byte) error)
	dictApplyIfBase = bridge.DictApplyIfBase.(func(*scone.Dict, []HolderKey, [][]byte, [][]byte) error)
	bundleOf        = bridge.Bundle.(func(*scone.State) []byte)
	setBundle       = bridge.SetBundle.(func(*scone.State, []byte))
	newEmptyState   = bridge.EmptyState.(func(context.Context, scone.Expect, string) *scone.State)
	started         = bridge.Started.(func(*scone.State) time.Time)
	setRecovery     = bridge.SetRecovery.(func(*scone.State, []byte))
	setServed       = bridge.SetServed.(func(*scone.State, string, string))
	restoreInto     = bridge.RestoreInto.(func(*scone.Sealer, context.Context, []byte, scone.Expect, string, []byte) (*scone.State, error))
	releaseData     = bridge.ReleaseData.(func(*scone.State))
	stateKey        = bridge.StateKey
)

// Peek is scone.ParseHeader without copying: the view's byte slices alias
// token and are valid only as long as token is unchanged. It allocates
// nothing.
func Peek(token []byte) (View, error) { return bridge.Peek(token) }

// Seal appends the envelope of sc to dst, sealed by s as they are (version,
// expiry and all: Commit sets those), under the primary key and a fresh
// nonce. Relays' and tests' way to make a SCONE of given fields.
func Seal(s *scone.Sealer, dst []byte, sc *scone.SCONE) ([]byte, error) {
	return seal(s, dst, sc)
}

// TTL returns the lifetime s gives a SCONE at each seal.
func TTL(s *scone.Sealer) time.Duration { return ttl(s) }

// Opened tells how a SCONE was opened.
type Opened struct {
	// KeyID is the key that opened it.
	KeyID uint32
	// Stale is set when that key is no longer the primary.
	Stale bool
}

// Open authenticates and decodes token into sc with s, with every check of
// Sealer.Restore, in its order (see there): what a relay that verifies
// SCONEs and scone inspect need, which have no State to restore. Open
// reuses sc.Data's storage; on error sc's contents are unspecified.
func Open(s *scone.Sealer, ctx context.Context, sc *scone.SCONE, token []byte, want scone.Expect) (Opened, error) {
	id, stale, err := open(s, ctx, sc, token, want)
	return Opened{KeyID: id, Stale: stale}, err
}

// Now returns the reading of s's clock (scone.WithClock).
func Now(s *scone.Sealer) time.Time { return now(s) }

// Changed reports whether the handler changed st.
func Changed(st *scone.State) bool {
	c, _, _ := stateFlags(st)
	return c
}

// Dropped reports whether the handler ended st's session (State.Drop).
func Dropped(st *scone.State) bool {
	_, d, _ := stateFlags(st)
	return d
}

func appliesOnError(st *scone.State) bool {
	_, _, a := stateFlags(st)
	return a
}

// Freeze makes every later change of st panic. A hook calls it when it has
// sealed the state but the handler goes on running (an HTTP handler that
// streams its body): a change then could not be sealed, and a panic is
// better than losing it silently.
func Freeze(st *scone.State) { freeze(st) }

// textEncoding is the text form of a SCONE (see scone.EncodeText).
var textEncoding = base64.RawURLEncoding.Strict()

// AppendText appends the text form of a sealed SCONE to dst, as
// scone.EncodeText.
func AppendText(dst, token []byte) []byte { return textEncoding.AppendEncode(dst, token) }

// TextLen returns the length of the text form of an n-byte envelope.
func TextLen(n int) int { return textEncoding.EncodedLen(n) }

// Codes lists every defined scone.Code except CodeUnknown, in value order.
// Codes are numbered from 1 without gaps, and a value past the last has a
// String of the form "code_N".
func Codes() []scone.Code {
	var cs []scone.Code
	for c := scone.Code(1); c != 0 && !strings.HasPrefix(c.String(), "code_"); c++ {
		cs = append(cs, c)
	}
	return cs
}

// ParseCode returns the scone.Code whose String is name: the inverse of
// Code.String, for the code names hooks send (an HTTP error header, say).
func ParseCode(name string) (scone.Code, bool) {
	if name == scone.CodeUnknown.String() {
		return scone.CodeUnknown, true
	}
	for _, c := range Codes() {
		if c.String() == name {
			return c, true
		}
	}
	return scone.CodeUnknown, false
}
