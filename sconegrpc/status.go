package sconegrpc

import (
	"errors"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/grpcframe"
)

// ErrorDomain is the domain of the google.rpc.ErrorInfo detail that every
// SCONE error status carries; its reason is the scone.Code's name in upper
// case (for example "EXPIRED"), so clients in any language can branch on it.
const ErrorDomain = grpcframe.ErrorDomain

// grpcCodes maps each scone.Code to its gRPC status code, the one place this
// mapping lives (the table is also in the scone.Code documentation).
var grpcCodes = map[scone.Code]codes.Code{
	scone.CodeMalformed:      codes.InvalidArgument,
	scone.CodeTampered:       codes.Unauthenticated,
	scone.CodeExpired:        codes.FailedPrecondition,
	scone.CodeUnknownKey:     codes.FailedPrecondition,
	scone.CodeWrongService:   codes.InvalidArgument,
	scone.CodeTooLarge:       codes.ResourceExhausted,
	scone.CodeRolledBack:     codes.FailedPrecondition,
	scone.CodeRevoked:        codes.PermissionDenied,
	scone.CodeWrongClient:    codes.PermissionDenied,
	scone.CodeExhausted:      codes.ResourceExhausted,
	scone.CodeUnavailable:    codes.Unavailable,
	scone.CodeInternal:       codes.Internal,
	scone.CodeConflict:       codes.Aborted,
	scone.CodeInDoubt:        codes.DeadlineExceeded,
	scone.CodeSessionExpired: codes.Unauthenticated,
	scone.CodeBundle:         codes.FailedPrecondition,
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
	if ce, ok := errors.AsType[*grpcframe.Error](err); ok {
		return ce.GRPCStatus() // a call's error: the status its server sent
	}
	var se *scone.Error
	if !errors.As(err, &se) {
		if st, ok := status.FromError(err); ok {
			return st
		}
		return status.New(codes.Internal, err.Error())
	}
	c := scone.CodeOf(se)
	st := status.New(GRPCCode(c), se.Error())
	if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: grpcframe.Reason(c), Domain: ErrorDomain}); derr == nil {
		return d
	}
	return st
}

// statusError returns err as the error of a call: a gRPC status that
// scone.CodeOf also reads (see Status).
func statusError(err error) error { return grpcframe.WrapStatus(Status(err).Err()) }
