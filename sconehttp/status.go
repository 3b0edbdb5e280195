package sconehttp

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
)

// ErrorHeader is the response header that names the scone.Code of a
// request refused for its SCONEs.
const ErrorHeader = "Scone-Error"

// httpStatuses maps each scone.Code to its HTTP status, the one place this
// mapping lives (the table is also in the scone.Code documentation).
var httpStatuses = map[scone.Code]int{
	scone.CodeMalformed:      http.StatusBadRequest,
	scone.CodeTampered:       http.StatusUnauthorized,
	scone.CodeExpired:        http.StatusUnauthorized,
	scone.CodeUnknownKey:     http.StatusUnauthorized,
	scone.CodeWrongService:   http.StatusBadRequest,
	scone.CodeTooLarge:       http.StatusRequestEntityTooLarge,
	scone.CodeRolledBack:     http.StatusConflict,
	scone.CodeRevoked:        http.StatusForbidden,
	scone.CodeWrongClient:    http.StatusForbidden,
	scone.CodeExhausted:      http.StatusServiceUnavailable,
	scone.CodeUnavailable:    http.StatusServiceUnavailable,
	scone.CodeInternal:       http.StatusInternalServerError,
	scone.CodeConflict:       http.StatusConflict,
	scone.CodeInDoubt:        http.StatusGatewayTimeout,
	scone.CodeSessionExpired: http.StatusUnauthorized,
	scone.CodeBundle:         http.StatusConflict,
}

// HTTPStatus returns the HTTP status a scone.Code maps to.
func HTTPStatus(c scone.Code) int {
	if s, ok := httpStatuses[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// problem is an RFC 9457 problem document, with the scone code.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code"`
}

// WriteError writes err as an application/problem+json response with the
// status its scone.Code maps to and the ErrorHeader; the body holds the
// error's message, never a cause (which may be internal).
func WriteError(w http.ResponseWriter, err error) {
	c := scone.CodeOf(err)
	if c == scone.CodeUnknown {
		c = scone.CodeInternal
	}
	detail := "internal error"
	var se *scone.Error
	if errors.As(err, &se) {
		detail = se.Message()
	}
	status := HTTPStatus(c)
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Set(ErrorHeader, c.String())
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(problem{
		Type:   "https://scone.dev/errors/" + c.String(),
		Title:  "SCONE " + c.String(),
		Status: status,
		Detail: detail,
		Code:   c.String(),
	})
}

// ResponseCode returns the scone.Code a server gave a response it refused
// for its SCONEs (in its ErrorHeader), or scone.CodeUnknown: the client's
// side of WriteError, for clients that call without a Transport. Errors of
// the Transport itself carry their code for scone.CodeOf.
func ResponseCode(resp *http.Response) scone.Code {
	if resp == nil {
		return scone.CodeUnknown
	}
	c, _ := hook.ParseCode(resp.Header.Get(ErrorHeader))
	return c
}
