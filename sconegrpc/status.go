package sconegrpc

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail that every
// SCONE error status carries; its reason is the scone.Code's name in upper
// case (for example "EXPIRED"), so clients in any language can branch on it.
const ErrorDomain = "scone.dev"

// grpcCodes maps each scone.Code to its gRPC status code, the one place this
// mapping lives (the table is also in the scone.Code documentation).
var grpcCodes = map[scone.Code]codes.Code{
	scone.CodeMalformed:    codes.InvalidArgument,
	scone.CodeTampered:     codes.Unauthenticated,
	scone.CodeExpired:      codes.FailedPrecondition,
	scone.CodeUnknownKey:   codes.FailedPrecondition,
	scone.CodeWrongService: codes.InvalidArgument,
	scone.CodeTooLarge:     codes.ResourceExhausted,
	scone.CodeRolledBack:   codes.FailedPrecondition,
	scone.CodeRevoked:      codes.PermissionDenied,
	scone.CodeWrongClient:  codes.PermissionDenied,
	scone.CodeExhausted:    codes.ResourceExhausted,
	scone.CodeUnavailable:  codes.Unavailable,
	scone.CodeInternal:     codes.Internal,
	scone.CodeConflict:     codes.Aborted,
	scone.CodeInDoubt:      codes.DeadlineExceeded,
}

// GRPCCode returns the gRPC status code a scone.Code maps to.
func GRPCCode(c scone.Code) codes.Code {
	if gc, ok := grpcCodes[c]; ok {
		return gc
	}
	return codes.Unknown
}

// Status converts an error of package scone into a gRPC status with the
// mapped code, the error's (secret-free) message, and an ErrorInfo detail
// naming the scone code. Errors that already are gRPC statuses pass through;
// other errors become codes.Internal.
func Status(err error) *status.Status {
	if err == nil {
		return nil
	}
	var se *scone.Error
	if !errors.As(err, &se) {
		if st, ok := status.FromError(err); ok {
			return st
		}
		return status.New(codes.Internal, err.Error())
	}
	st := status.New(GRPCCode(se.Code()), se.Error())
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: reason(se.Code()), Domain: ErrorDomain}); derr == nil {
		return d
	}
	return st
}

func reason(c scone.Code) string {
	b := []byte(c.String())
	for i, ch := range b {
		if 'a' <= ch && ch <= 'z' {
			b[i] = ch - 'a' + 'A'
		}
	}
	return string(b)
}

// CodeOf returns the scone.Code of an error a call returned: from a local
// scone error, or from the ErrorInfo detail of a status a server sent.
// It returns scone.CodeUnknown for other errors.
func CodeOf(err error) scone.Code {
	if c := scone.CodeOf(err); c != scone.CodeUnknown {
		return c
	}
	st, ok := status.FromError(err)
	if !ok {
		return scone.CodeUnknown
	}
	for _, d := range st.Details() {
		info, ok := d.(*errdetails.ErrorInfo)
		if !ok || info.GetDomain() != ErrorDomain {
			continue
		}
		for _, c := range scone.Codes() {
			if reason(c) == info.GetReason() {
				return c
			}
		}
	}
	return scone.CodeUnknown
}

func statusError(err error) error { return Status(err).Err() }
