package sconehttp

import (
	"encoding/base64"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
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
	// CookiePrefix starts the name of every SCONE cookie, after the
	// "__Host-" or "__Secure-" prefix of a Secure cookie; the service ID
	// follows (or "~" and its base64url form, if it is not a valid cookie
	// name): "__Host-scone-cart" at path "/", "__Secure-scone-cart" at
	// another path, "scone-cart" over plain HTTP to a loopback host.
	CookiePrefix = "scone-"
	// DefaultCookieBudget is the longest name=value a SCONE cookie may have:
	// the 4096 bytes RFC 6265 asks user agents to keep at the least.
	DefaultCookieBudget = 4096
)

// maxSCONEs bounds the SCONEs one request may carry.
const maxSCONEs = 64

// cookieName returns the name of the cookie of a service's SCONE, but for
// the prefix of a Secure cookie (namePrefix).
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

// errBothCarriers refuses a request with SCONEs in both carriers.
var errBothCarriers = scone.NewError(scone.CodeMalformed, "SCONEs in both the "+HeaderSCONE+" header and cookies")

// carried is what a request brought: its SCONEs, and how it holds them.
type carried struct {
	tokens [][]byte
	// cookies are the names of the request's SCONE cookies that count (see
	// requestSCONEs), emptied ones too, each once.
	cookies []string
	// byHeader: the reply goes in headers (see requestSCONEs).
	byHeader bool
}

// requestSCONEs gathers the SCONEs of a request, from its Scone header and
// from its cookies whose names start with cookiePrefix (the prefix the
// request's cookie policy would set, CookiePrefix included); other cookies
// do not count, so a cookie planted under a weaker prefix (by a sibling
// subdomain, or over plain HTTP) is ignored.
//
// The reply goes in headers only when the request has the Scone header and
// no SCONE cookie: a token that came in a cookie never goes back in a
// header, where page script could read it. A request with the header and
// SCONE cookies is answered in cookies if its header is empty, and fails
// with CodeMalformed if the header carries SCONEs. A value that is not a
// SCONE's text form fails with CodeMalformed: a damaged cookie is refused,
// never ignored. The cookies are listed even when it fails.
func requestSCONEs(r *http.Request, cookiePrefix string) (in carried, err error) {
	var cookies []*http.Cookie
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, cookiePrefix) {
			cookies = append(cookies, c)
			if !slices.Contains(in.cookies, c.Name) {
				in.cookies = append(in.cookies, c.Name)
			}
		}
	}
	add := func(text string) error {
		if len(in.tokens) == maxSCONEs {
			return scone.NewError(scone.CodeTooLarge, "more than 64 SCONEs in one request")
		}
		tok, err := scone.DecodeText(text)
		if err != nil {
			return err
		}
		in.tokens = append(in.tokens, tok)
		return nil
	}
	if vals, ok := r.Header[HeaderSCONE]; ok {
		in.byHeader = len(in.cookies) == 0
		for _, v := range vals {
			for text := range strings.SplitSeq(v, ",") {
				if text = strings.TrimSpace(text); text == "" {
					continue
				}
				if !in.byHeader {
					return in, errBothCarriers
				}
				if err := add(text); err != nil {
					return in, err
				}
			}
		}
	}
	for _, c := range cookies {
		if c.Value != "" { // empty: an ended session
			if err := add(c.Value); err != nil {
				return in, err
			}
		}
	}
	return in, nil
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

// Prefixes of cookie names that browsers enforce (RFC 6265bis §4.1.3): a
// "__Secure-" cookie must be Secure; a "__Host-" cookie must also have
// Path=/ and no Domain, so no other host (a sibling subdomain) can set it.
const (
	securePrefix = "__Secure-"
	hostPrefix   = "__Host-"
)

// namePrefix returns the strongest prefix a cookie with these attributes
// may carry (SCONE cookies never have a Domain).
func namePrefix(secure bool, path string) string {
	switch {
	case !secure:
		return ""
	case path == "/":
		return hostPrefix
	}
	return securePrefix
}

// cookiePolicy is how SCONE cookies are set.
type cookiePolicy struct {
	budget   int
	sameSite http.SameSite
	secure   *bool // nil: Secure unless plain HTTP to a loopback host (secureFor)
}

// secureFor reports whether the SCONE cookies of r are Secure: always,
// unless WithSecureCookies says otherwise or r came over plain HTTP, with
// no proxy's forwarding header, to a loopback host (127.0.0.0/8, ::1,
// localhost), where a developer runs the service without TLS. A request
// that reached the server through a TLS-terminating proxy comes over plain
// HTTP but names the public host, so it gets Secure cookies.
func (p *cookiePolicy) secureFor(r *http.Request) bool {
	if p.secure != nil {
		return *p.secure
	}
	if r.TLS != nil || !loopbackHost(r.Host) {
		return true
	}
	for _, h := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		if _, ok := r.Header[h]; ok {
			return true
		}
	}
	return false
}

// loopbackHost reports whether a Host header names the local machine.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && ip.Unmap().IsLoopback()
}

// cookie returns a SCONE cookie with its attributes, no value.
func (p *cookiePolicy) cookie(service, scope string, secure bool) *http.Cookie {
	if scope == "" {
		scope = "/"
	}
	return &http.Cookie{Name: namePrefix(secure, scope) + cookieName(service), Path: scope,
		HttpOnly: true, Secure: secure, SameSite: p.sameSite}
}

// emptied returns a cookie that empties the one named name at path, with a
// lifetime of a second. A SCONE cookie is emptied rather than deleted
// (Max-Age=0): some clients (curl 7.88) undo a deletion that another
// cookie follows in the same response. An empty SCONE cookie counts as none.
func (p *cookiePolicy) emptied(name, path string, secure bool) *http.Cookie {
	return &http.Cookie{Name: name, Path: path, MaxAge: 1, HttpOnly: true, Secure: secure, SameSite: p.sameSite}
}

// replyCookies returns the Set-Cookie lines of a reply: its new SCONEs, the
// ends of sessions, and then the cookies named in clear, emptied at path
// clearPath. A SCONE over the cookie budget fails with CodeTooLarge, before
// any cookie is set.
func (p *cookiePolicy) replyCookies(r *hook.Reply, secure bool, now time.Time, clear []string, clearPath string) ([]*http.Cookie, error) {
	var out []*http.Cookie
	set := map[string]bool{}
	for _, tok := range r.SCONEs {
		h, err := hook.Peek(tok)
		if err != nil {
			return nil, err
		}
		c := p.cookie(string(h.Service), string(h.Scope), secure)
		c.Value = scone.EncodeText(tok)
		if n := len(c.Name) + 1 + len(c.Value); n > p.budget {
			return nil, scone.NewError(scone.CodeTooLarge, "a SCONE cookie of "+strconv.Itoa(n)+
				" bytes is over the cookie budget of "+strconv.Itoa(p.budget)+
				" (enable compression in the Sealer, or use the header carrier)")
		}
		// Max-Age is whole seconds, rounded up: the cookie may outlive
		// the SCONE by under a second (which the server then refuses as
		// expired), never the other way round, however long after the
		// seal now is.
		c.MaxAge = max(1, int(math.Ceil(h.Expires.Sub(now).Seconds())))
		out = append(out, c)
		set[c.Name+"\x00"+c.Path] = true
	}
	empty := func(name, path string) {
		if !set[name+"\x00"+path] { // not replaced in this response
			out = append(out, p.emptied(name, path, secure))
			set[name+"\x00"+path] = true
		}
	}
	for _, d := range r.Dropped {
		c := p.cookie(d.Service, d.Scope, secure)
		empty(c.Name, c.Path)
	}
	for _, name := range clear {
		empty(name, clearPath)
	}
	return out, nil
}

// maxScopeLen is the longest scope of a SCONE (docs/wire.md).
const maxScopeLen = 255
