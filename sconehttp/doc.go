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
// expiry, HttpOnly, Secure under TLS, SameSite=Lax. Browsers and
// `curl -c jar -b jar` are holders as they are. RFC 6265 guarantees 4096
// bytes per cookie: a SCONE that does not fit fails the request with 413
// (too_large) rather than being cut or dropped; scone.WithCompression
// makes more state fit. When a session ends, its cookie is emptied and
// expires within a second (an empty SCONE cookie counts as none): some
// clients fail to delete several cookies in one response.
//
// The header carrier is for services: the Transport sends its SCONEs in the
// "Scone" request header (text form, comma-separated), and the Middleware
// answers in kind, in the "Scone" and "Scone-Drop" response headers, with no
// limit but the Sealer's size budget.
//
// # Errors
//
// A SCONE that does not open gets the status its code maps to (HTTPStatus),
// an application/problem+json body naming the code, and a "Scone-Error"
// header with the code (ResponseCode reads it); the holder's SCONEs are not
// touched, and no empty session is started over them.
//
// # Multi-tier
//
// A handler that calls back ends with the request's context, over gRPC
// (sconegrpc) or HTTP (a Transport), carries their SCONEs: each back end's
// new versions come back in this response, scoped to it.
package sconehttp
