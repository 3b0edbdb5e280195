// Package sconehttp is the channel hook of SCONE for net/http: a server
// Middleware that restores a request's state into its context and seals what
// changed into the response, and a client Transport that keeps the SCONEs
// it is given and sends them back. Handlers use the same API as over gRPC
// (scone.FromContext, scone.Typed), so the same handler logic serves both.
//
//	mux.Handle("/shop/", sconehttp.Middleware(sealer, "shop", sconehttp.WithScope(sconehttp.Prefix("/shop/")))(shopHandler))
//	client := &http.Client{Transport: sconehttp.NewTransport(nil)}
//
// # Carriers
//
// Cookies (the default) need no client code: one cookie per SCONE, named
// "scone-" and the service ID, its path the SCONE's scope, Max-Age its
// expiry, HttpOnly, Secure, SameSite=Lax. A Secure cookie's name carries
// the strongest prefix its path allows: "__Host-scone-cart" at path "/"
// (no other host, not even a sibling subdomain, can set it),
// "__Secure-scone-cart" at another. Cookies are Secure unless the request
// came over plain HTTP to a loopback host (127.0.0.0/8, ::1, localhost)
// with no Forwarded or X-Forwarded-* header: there they are plain
// "scone-cart", so a developer's service on 127.0.0.1 works without TLS. A
// service behind a TLS-terminating proxy gets Secure cookies with no
// option; WithSecureCookies sets them for every request. Only cookies with
// the prefix the request's policy would set count: a SCONE cookie planted
// under a weaker prefix is ignored.
//
// Browsers and `curl -c jar -b jar` are holders as they are. RFC 6265
// guarantees 4096 bytes per cookie: a SCONE that does not fit fails the
// request with 413 (too_large) rather than being cut or dropped;
// scone.WithCompression makes more state fit. When a session ends, its
// cookie is emptied and expires within a second (an empty SCONE cookie
// counts as none): some clients fail to delete several cookies in one
// response.
//
// The header carrier is for services: the Transport sends its SCONEs in the
// "Scone" request header (text form, comma-separated), and the Middleware
// answers in kind, in the "Scone" and "Scone-Drop" response headers, with no
// limit but the Sealer's size budget. The rule that picks the carrier: a
// request with the Scone header and no SCONE cookie (one that counts, even
// emptied) is answered in headers; any other in cookies. So a token that
// came in a cookie never goes back in a header, where script in the page
// (which cannot read HttpOnly cookies) could read it: a request with an
// empty Scone header and SCONE cookies is answered in cookies, and one with
// SCONEs in both fails with 400 (malformed).
//
// # Browsers
//
// Unsafe requests (POST, PUT, DELETE, PATCH...) from another origin are
// refused with 403 before the SCONEs are read, by net/http's
// CrossOriginProtection (the Sec-Fetch-Site header, else Origin against
// Host), so another web site cannot make a user's browser change the
// user's state. Requests with neither header (services, curl) pass.
// WithTrustedOrigins lets other origins in; WithCrossOriginProtection takes
// a configured protection; WithoutCrossOriginProtection turns it off, which
// is insecure for anything a browser reaches.
//
// # Errors
//
// A SCONE that does not open gets the status its code maps to (HTTPStatus),
// an application/problem+json body naming the code, and a "Scone-Error"
// header with the code (CodeOf reads it); no empty session is started over
// it, and the handler does not run. A header holder's SCONEs are not
// touched: it keeps what it had. A cookie holder (a browser) could not get
// out of the error by itself, so, when the code says the SCONE itself is at
// fault (malformed, tampered, expired, unknown_key, wrong_service,
// wrong_client, revoked, rolled_back), the error response also empties the
// request's SCONE cookies, and the next request starts a new session: the
// user sees the error once, never a silent reset. When the service's own
// SCONE opens but the handler answers with such an error (WriteError of a
// back end's refusal), the back ends' cookies are emptied and the service's
// own is kept.
//
// # Multi-tier
//
// A handler that calls back ends with the request's context, over gRPC
// (sconegrpc) or HTTP (a Transport), carries their SCONEs: each back end's
// new versions come back in this response, scoped to it.
package sconehttp
