package scone

import (
	"errors"
	"strconv"
)

// Code classifies every error this module returns, so callers can branch on
// it without matching strings. The values are append-only: they travel on
// the wire between hooks, so a value never changes meaning.
//
// The transport packages map each code to one status, in one place each:
//
//	code          gRPC status          HTTP status
//	malformed     InvalidArgument      400 Bad Request
//	tampered      Unauthenticated      401 Unauthorized
//	expired       FailedPrecondition   401 Unauthorized
//	unknown_key   FailedPrecondition   401 Unauthorized
//	wrong_service InvalidArgument      400 Bad Request
//	too_large     ResourceExhausted    413 Content Too Large
//	rolled_back   FailedPrecondition   409 Conflict
//	revoked       PermissionDenied     403 Forbidden
//	wrong_client  PermissionDenied     403 Forbidden
//	exhausted     ResourceExhausted    503 Service Unavailable
//	unavailable   Unavailable          503 Service Unavailable
//	internal      Internal             500 Internal Server Error
//	conflict      Aborted              409 Conflict
//	in_doubt      DeadlineExceeded     504 Gateway Timeout
//	session_expired Unauthenticated    401 Unauthorized
//	bundle_mismatch FailedPrecondition 409 Conflict
type Code uint8

// The codes. New codes are only ever appended.
const (
	// CodeUnknown is what CodeOf reports for nil and for errors that did not
	// come from this module.
	CodeUnknown Code = 0
	// CodeMalformed: the bytes are not a SCONE envelope this server can parse
	// (bad length, unknown format version, bad field).
	CodeMalformed Code = 1
	// CodeTampered: authentication failed; the SCONE was changed, or was not
	// sealed with the key its header names.
	CodeTampered Code = 2
	// CodeExpired: the SCONE's expiry has passed.
	CodeExpired Code = 3
	// CodeUnknownKey: the key ID in the header is not in the key ring, or the
	// key was retired and its grace period is over.
	CodeUnknownKey Code = 4
	// CodeWrongService: the SCONE belongs to another service.
	CodeWrongService Code = 5
	// CodeTooLarge: a SCONE, or the state to seal into one, is over the size
	// budget.
	CodeTooLarge Code = 6
	// CodeRolledBack: a mark store is on (WithMarkStore) and this version
	// of the session's SCONE was already spent: a newer one was issued. When
	// the version is the one just before the newest (its reply was lost),
	// the refusal carries the newest SCONE, and the holder goes on with it.
	CodeRolledBack Code = 7
	// CodeRevoked: the SCONE was sealed under a revocation epoch that has
	// since been raised.
	CodeRevoked Code = 8
	// CodeWrongClient: the SCONE is bound to another client identity.
	CodeWrongClient Code = 9
	// CodeExhausted: a bounded holder or store is full and refuses new state
	// rather than evicting live state.
	CodeExhausted Code = 10
	// CodeUnavailable: a store the request depends on cannot answer now.
	CodeUnavailable Code = 11
	// CodeInternal: a bug or a misconfiguration on the server (for example a
	// handler whose state does not encode, or no hook installed).
	CodeInternal Code = 12
	// CodeConflict: another call changed the same state first (two calls
	// started from the same SCONE); this one's change is not kept. Retry.
	CodeConflict Code = 13
	// CodeInDoubt: the request may or may not have taken effect. A store
	// it wrote the new state to did not answer, and may still apply it
	// (a write held up in the network lands when it heals). Unlike
	// CodeUnavailable, which promises the state is unchanged, read the
	// state before retrying a change that is not idempotent.
	CodeInDoubt Code = 14
	// CodeSessionExpired: the session began longer ago than the maximum
	// session age (WithMaxSessionAge), however often it was re-sealed. Start
	// a new session (log in again).
	CodeSessionExpired Code = 15
	// CodeBundle: the SCONEs a front end's request carried for its back ends
	// are not the ones its last reply gave (one is missing, older, or from
	// another session). The message says which; to start over, drop every
	// SCONE (cookie) of the front end's scope.
	CodeBundle Code = 16
)

var codeNames = [...]string{
	CodeUnknown:        "unknown",
	CodeMalformed:      "malformed",
	CodeTampered:       "tampered",
	CodeExpired:        "expired",
	CodeUnknownKey:     "unknown_key",
	CodeWrongService:   "wrong_service",
	CodeTooLarge:       "too_large",
	CodeRolledBack:     "rolled_back",
	CodeRevoked:        "revoked",
	CodeWrongClient:    "wrong_client",
	CodeExhausted:      "exhausted",
	CodeUnavailable:    "unavailable",
	CodeInternal:       "internal",
	CodeConflict:       "conflict",
	CodeInDoubt:        "in_doubt",
	CodeSessionExpired: "session_expired",
	CodeBundle:         "bundle_mismatch",
}

// String returns the code's stable snake_case name, as used in metrics,
// logs and problem documents.
func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "code_" + strconv.Itoa(int(c))
}

// Error is the error type of this module. Its message is safe to send to a
// peer: it never holds plaintext state or key material. The cause, kept for
// local logs, is reachable through Unwrap and is not part of Error().
type Error struct {
	code     Code
	msg      string
	cause    error
	newest   []byte // a refusal of a spent version: the session's newest SCONE
	recovery []byte // and what its reply carried besides (see sessionMark)
}

// NewError returns an error with the given code and message. The message
// must not contain secrets: it may be sent to the caller.
func NewError(c Code, msg string) *Error {
	return &Error{code: c, msg: msg}
}

// WrapError is NewError with a cause that stays local (see Error).
func WrapError(c Code, msg string, cause error) *Error {
	return &Error{code: c, msg: msg, cause: cause}
}

// Message returns the message without the code prefix.
func (e *Error) Message() string { return e.msg }

// Error returns "scone: <code>: <message>".
func (e *Error) Error() string {
	if e.msg == "" {
		return "scone: " + e.code.String()
	}
	return "scone: " + e.code.String() + ": " + e.msg
}

// Unwrap returns the local cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is an *Error with the same code, so
// errors.Is(err, scone.NewError(scone.CodeExpired, "")) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.code == e.code
}

// CodeOf returns the code of the first *Error in err's chain, or CodeUnknown.
func CodeOf(err error) Code {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.code
	}
	return CodeUnknown
}

// errCode returns an *Error with code c and message msg, as an error.
func errCode(c Code, msg string) error { return &Error{code: c, msg: msg} }
