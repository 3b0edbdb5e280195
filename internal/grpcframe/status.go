package grpcframe

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail that every
// SCONE error status carries; its reason is the scone.Code's name in upper
// case (see Reason).
const ErrorDomain = "scone.dev"

// Reason returns the ErrorInfo reason of c: its name in upper case, for
// example "EXPIRED".
func Reason(c scone.Code) string {
	b := []byte(c.String())
	for i, ch := range b {
		if 'a' <= ch && ch <= 'z' {
			b[i] = ch - 'a' + 'A'
		}
	}
	return string(b)
}

// StatusCode returns the scone.Code of an error a gRPC call returned: from a
// scone error in its chain, or from the ErrorInfo detail of a status a
// server sent. It returns scone.CodeUnknown for other errors. The sconegrpc
// client hook turns the errors of its calls into errors scone.CodeOf reads;
// this is for calls made without it (to a relay, say).
func StatusCode(err error) scone.Code {
	if c := scone.CodeOf(err); c != scone.CodeUnknown {
		return c
	}
	st, ok := status.FromError(err)
	if !ok {
		return scone.CodeUnknown
	}
	return codeOfStatus(st)
}

// codeOfStatus reads the scone code of a status's ErrorInfo detail.
func codeOfStatus(st *status.Status) scone.Code {
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain {
			continue
		}
		for _, c := range hook.Codes() {
			if Reason(c) == info.GetReason() {
				return c
			}
		}
	}
	return scone.CodeUnknown
}

// Error is the error of a call whose status a server sent with a scone
// code: scone.CodeOf finds the code (the error wraps a *scone.Error), and
// status.FromError and status.Code find the status, as before. Its text is
// the status error's.
type Error struct {
	st  *status.Status
	err *scone.Error
}

// WrapStatus returns err as an *Error when it is a gRPC status that carries
// a scone code, and err itself otherwise.
func WrapStatus(err error) error {
	if err == nil || scone.CodeOf(err) != scone.CodeUnknown {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	c := codeOfStatus(st)
	if c == scone.CodeUnknown {
		return err
	}
	msg := st.Message()
	if msg == "scone: "+c.String() {
		msg = ""
	}
	if prefix := "scone: " + c.String() + ": "; len(msg) > len(prefix) && msg[:len(prefix)] == prefix {
		msg = msg[len(prefix):]
	}
	return &Error{st: st, err: scone.NewError(c, msg)}
}

// Error returns the status error's text.
func (e *Error) Error() string { return e.st.Err().Error() }

// GRPCStatus returns the status, for status.FromError and status.Code.
func (e *Error) GRPCStatus() *status.Status { return e.st }

// Unwrap returns the scone error, for scone.CodeOf and errors.As.
func (e *Error) Unwrap() error { return e.err }
