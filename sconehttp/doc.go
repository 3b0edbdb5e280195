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
// # Connect
//
// A Connect handler (connectrpc.com/connect) is an http.Handler: the
// Middleware goes around it, scoped to the handler's path, and its methods
// read and change their state with scone.FromContext or scone.Typed. A
// connect-go client keeps its session over each of its protocols (Connect,
// gRPC, gRPC-Web) with a Transport under its http.Client, or a cookie jar
// (gRPC needs HTTP/2: TLS, or unencrypted HTTP/2 through http.Protocols):
//
//	path, h := pbconnect.NewCartHandler(cart, connect.WithRecover(onPanic))
//	mux.Handle(path, sconehttp.Middleware(sealer, "cart", sconehttp.WithScope(sconehttp.StaticScope(path)))(h))
//	client := pbconnect.NewCartClient(&http.Client{Transport: sconehttp.NewTransport(nil)}, url, connect.WithGRPC())
//
// The SCONE goes out with the response's headers, never in trailers. A
// unary method's state is sealed when it returns. connect-go flushes every
// message of a stream, so a server stream's state is sealed with its first
// message (or with its end, if it sends none): a streaming method makes
// its changes before its first Send. A change after it could not reach the
// client, and panics with a scone error (CodeInternal) rather than being
// lost; connect.WithRecover turns the panic into the call's error (without
// it, net/http aborts the stream). The holder keeps the SCONE that came
// with the headers.
//
// A failed call keeps the holder's SCONE as it was, as over gRPC, with the
// Connect protocol's unary calls (which fail with an HTTP status of 400 or
// more) and with gRPC and gRPC-Web (which fail with 200 and a Grpc-Status
// that the Middleware reads when the method has sent no message). A Connect
// protocol stream puts its error in its last message, which the Middleware
// does not read: what such a method changed before failing is kept.
//
// A SCONE that does not open is refused before the method runs; a
// connect-go client gets the code of the HTTP status (expired, tampered,
// unknown_key: Unauthenticated; wrong_client, revoked: PermissionDenied;
// unavailable, exhausted: Unavailable; malformed, wrong_service: Internal;
// others Unknown). The scone code is in the ErrorHeader of the response,
// which connect-go's errors do not carry.
//
// # Multi-tier
//
// A handler that calls back ends with the request's context, over gRPC
// (sconegrpc) or HTTP (a Transport), carries their SCONEs: each back end's
// new versions come back in this response, scoped to it.
package sconehttp
