package sconehttp

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
)

// Names of the carriers on the wire.
const (
	// HeaderSCONE carries SCONEs in text form, comma-separated: on requests
	// from a Transport (present, if empty, on every such request: it asks
	// for replies in headers), and on the responses to them.
	HeaderSCONE = "Scone"
	// HeaderDrop names, on a response, the sessions that ended: the service
	// ID and the scope, each path-escaped, separated by a space.
	HeaderDrop = "Scone-Drop"
	// HeaderScope is set by a front end on its calls to back ends: the scope
	// the client files the back end's SCONEs under.
	HeaderScope = "Scone-Scope"
	// CookiePrefix starts the name of every SCONE cookie; the service ID
	// follows (or "~" and its base64url form, if it is not a valid cookie
	// name).
	CookiePrefix = "scone-"
	// DefaultCookieBudget is the longest name=value a SCONE cookie may have:
	// the 4096 bytes RFC 6265 asks user agents to keep at the least.
	DefaultCookieBudget = 4096
)

// maxSCONEs bounds the SCONEs one request may carry.
const maxSCONEs = 64

// maxScopeLen is the longest scope of a SCONE (docs/wire.md).
const maxScopeLen = 255

// cookieName returns the name of the cookie of a service's SCONE.
func cookieName(service string) string {
	for i := 0; i < len(service); i++ {
		if !tokenChar(service[i]) {
			return CookiePrefix + "~" + base64.RawURLEncoding.EncodeToString([]byte(service))
		}
	}
	return CookiePrefix + service
}

// tokenChar reports whether c may appear in a cookie name (an RFC 7230 token).
func tokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// requestSCONEs gathers the SCONEs of a request, from its cookies and its
// Scone header; byHeader reports whether the client used the header
// carrier. A value that is not a SCONE's text form fails with
// CodeMalformed: a damaged cookie is refused, never ignored.
func requestSCONEs(r *http.Request) (tokens [][]byte, byHeader bool, err error) {
	add := func(text string) error {
		if len(tokens) == maxSCONEs {
			return scone.NewError(scone.CodeTooLarge, "more than 64 SCONEs in one request")
		}
		tok, err := scone.DecodeText(text)
		if err != nil {
			return err
		}
		tokens = append(tokens, tok)
		return nil
	}
	if vals, ok := r.Header[HeaderSCONE]; ok {
		byHeader = true
		for _, v := range vals {
			for text := range strings.SplitSeq(v, ",") {
				if text = strings.TrimSpace(text); text != "" {
					if err := add(text); err != nil {
						return nil, true, err
					}
				}
			}
		}
	}
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, CookiePrefix) && c.Value != "" { // empty: an ended session
			if err := add(c.Value); err != nil {
				return nil, byHeader, err
			}
		}
	}
	return tokens, byHeader, nil
}

// setHeaders puts a reply's SCONEs on a response's headers.
func setHeaders(h http.Header, r *hook.Reply) {
	for _, tok := range r.SCONEs {
		h.Add(HeaderSCONE, scone.EncodeText(tok))
	}
	for _, d := range r.Dropped {
		h.Add(HeaderDrop, url.PathEscape(d.Service)+" "+url.PathEscape(d.Scope))
	}
}

// replyFromHeaders reads the SCONEs a response's headers carry.
func replyFromHeaders(h http.Header) (hook.Reply, error) {
	var r hook.Reply
	for _, v := range h.Values(HeaderSCONE) {
		for text := range strings.SplitSeq(v, ",") {
			if text = strings.TrimSpace(text); text == "" {
				continue
			}
			if len(r.SCONEs) == maxSCONEs {
				return r, scone.NewError(scone.CodeTooLarge, "more than 64 SCONEs in one response")
			}
			tok, err := scone.DecodeText(text)
			if err != nil {
				return r, err
			}
			r.SCONEs = append(r.SCONEs, tok)
		}
	}
	for _, v := range h.Values(HeaderDrop) {
		for entry := range strings.SplitSeq(v, ",") {
			service, scope, ok := strings.Cut(strings.TrimSpace(entry), " ")
			s, err1 := url.PathUnescape(service)
			p, err2 := url.PathUnescape(scope)
			if !ok || err1 != nil || err2 != nil || s == "" {
				return r, scone.NewError(scone.CodeMalformed, "bad "+HeaderDrop+" header")
			}
			r.Dropped = append(r.Dropped, hook.HolderKey{Service: s, Scope: p})
		}
	}
	return r, nil
}

// cookiePolicy is how SCONE cookies are set.
type cookiePolicy struct {
	budget   int
	sameSite http.SameSite
	secure   *bool // nil: Secure when the request came over TLS
}

// replyCookies returns the Set-Cookie lines of a reply. A SCONE over the
// cookie budget fails with CodeTooLarge, before any cookie is set.
func (p *cookiePolicy) replyCookies(r *hook.Reply, req *http.Request, now time.Time) ([]*http.Cookie, error) {
	secure := req.TLS != nil
	if p.secure != nil {
		secure = *p.secure
	}
	cookie := func(service, scope string) *http.Cookie {
		if scope == "" {
			scope = "/"
		}
		return &http.Cookie{Name: cookieName(service), Path: scope, HttpOnly: true, Secure: secure, SameSite: p.sameSite}
	}
	// New values first, then the ends of sessions. A session's cookie is
	// not deleted (Max-Age=0) but emptied, with a lifetime of a second: some
	// clients (curl 7.88) undo a deletion that another cookie follows in the
	// same response. An empty SCONE cookie counts as none.
	var out []*http.Cookie
	set := map[string]bool{}
	for _, tok := range r.SCONEs {
		h, err := hook.Peek(tok)
		if err != nil {
			return nil, err
		}
		c := cookie(string(h.Service), string(h.Scope))
		c.Value = scone.EncodeText(tok)
		if n := len(c.Name) + 1 + len(c.Value); n > p.budget {
			return nil, scone.NewError(scone.CodeTooLarge, "a SCONE cookie of "+strconv.Itoa(n)+
				" bytes is over the cookie budget of "+strconv.Itoa(p.budget)+
				" (enable compression in the Sealer, or use the header carrier)")
		}
		// Expiries are whole milliseconds: measure from now's millisecond.
		c.MaxAge = max(1, int(h.Expires.Sub(now.Truncate(time.Millisecond)).Seconds()))
		out = append(out, c)
		set[c.Name+"\x00"+c.Path] = true
	}
	for _, d := range r.Dropped {
		c := cookie(d.Service, d.Scope)
		if set[c.Name+"\x00"+c.Path] {
			continue // replaced in this response
		}
		c.MaxAge = 1
		out = append(out, c)
	}
	return out, nil
}
