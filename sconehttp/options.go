package sconehttp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/scone-project/scone"
)

// Option configures the Middleware.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// DefaultBufferLimit is how much of a response body the Middleware holds
// back (so the state is sealed after the handler is done) before it must
// send the headers, and so seal, early.
const DefaultBufferLimit = 64 << 10

type config struct {
	scope          func(*http.Request) string
	identity       func(*http.Request) string
	resetOnError   bool
	cookies        cookiePolicy
	bufferLimit    int
	metrics        prometheus.Registerer
	tracer         trace.TracerProvider
	crossOrigin    *http.CrossOriginProtection // nil: a new one, unless anyOrigin
	trustedOrigins []string
	anyOrigin      bool // WithoutCrossOriginProtection
}

func newConfig(opts []Option) config {
	c := config{
		scope:       StaticScope("/"),
		identity:    PeerIdentity,
		cookies:     cookiePolicy{budget: DefaultCookieBudget, sameSite: http.SameSiteLaxMode},
		bufferLimit: DefaultBufferLimit,
	}
	for _, o := range opts {
		o.apply(&c)
	}
	return c
}

// WithScope sets the scope of the SCONEs sealed for a request that comes
// straight from a client (default StaticScope("/")): for cookies, the path
// the browser sends them back to. A front end's own front end may pass
// another (HeaderScope); back ends seal with it.
func WithScope(f func(*http.Request) string) Option {
	return optionFunc(func(c *config) { c.scope = f })
}

// StaticScope returns a scope function for WithScope that always gives
// scope, for example "/shop/" for a handler mounted there.
func StaticScope(scope string) func(*http.Request) string {
	return func(*http.Request) string { return scope }
}

// WithClientIdentity sets how the Middleware identifies the caller, for
// SCONEs bound to a client (scone.WithClientBinding). The default,
// PeerIdentity, uses the verified TLS client certificate.
func WithClientIdentity(f func(*http.Request) string) Option {
	return optionFunc(func(c *config) { c.identity = f })
}

// WithResetOnFailure treats SCONEs as a pure cache: one that does not open
// (for a reason of its own) starts an empty state, and the response drops
// it from the holder. Off by default, because it loses the client's state.
func WithResetOnFailure() Option {
	return optionFunc(func(c *config) { c.resetOnError = true })
}

// WithCookieBudget sets the longest name=value of a SCONE cookie (default
// DefaultCookieBudget). A SCONE over it fails the request with 413.
func WithCookieBudget(n int) Option {
	return optionFunc(func(c *config) { c.cookies.budget = n })
}

// WithSameSite sets the SameSite attribute of SCONE cookies (default Lax).
func WithSameSite(m http.SameSite) Option {
	return optionFunc(func(c *config) { c.cookies.sameSite = m })
}

// WithSecureCookies sets the Secure attribute of SCONE cookies, and with it
// their name's prefix, for every request. By default they are Secure, and
// named with the "__Host-" prefix (path "/") or "__Secure-" (another path),
// except for a request over plain HTTP to a loopback host (127.0.0.0/8,
// ::1, localhost) with no forwarding header, so a service on 127.0.0.1
// works without TLS for development. A service behind a TLS-terminating
// proxy needs nothing: its requests name the public host. Set it on behind
// a proxy that rewrites the Host header to a loopback address and adds no
// Forwarded or X-Forwarded-* header. Set it off only for a service that
// browsers reach over plain HTTP on the network, where anyone on the path
// can read and replace its cookies.
//
// When reading, only cookies with the prefix this policy would set count: a
// cookie planted under a weaker prefix, by a sibling subdomain or over plain
// HTTP, is ignored. Only "__Host-" (scope "/") keeps a sibling subdomain
// served over HTTPS from setting a cookie the service reads.
func WithSecureCookies(on bool) Option {
	return optionFunc(func(c *config) { c.cookies.secure = &on })
}

// WithTrustedOrigins lets browsers on these origins ("https://app.example",
// scheme, host and an optional port) send unsafe requests (POST, PUT,
// DELETE...), which the Middleware refuses from any origin but the
// request's own by default. Middleware panics if one is not an origin.
func WithTrustedOrigins(origins ...string) Option {
	return optionFunc(func(c *config) { c.trustedOrigins = append(c.trustedOrigins, origins...) })
}

// WithCrossOriginProtection makes the Middleware check requests with p
// (configured with trusted origins, bypass patterns or a deny handler)
// instead of a new http.CrossOriginProtection. Origins of
// WithTrustedOrigins are added to p.
func WithCrossOriginProtection(p *http.CrossOriginProtection) Option {
	return optionFunc(func(c *config) { c.crossOrigin, c.anyOrigin = p, false })
}

// WithoutCrossOriginProtection turns off the check that refuses unsafe
// requests from other origins, for a Middleware that only services reach
// (with the Scone header). INSECURE for anything a browser reaches: any web
// site the user visits can then post forms to the service, and the user's
// browser sends the SCONE cookies with them (a cross-site request forgery
// that changes the user's state; SameSite=Lax stops it only in browsers
// that enforce it, and not from sibling subdomains). Prefer
// WithTrustedOrigins.
func WithoutCrossOriginProtection() Option {
	return optionFunc(func(c *config) { c.crossOrigin, c.anyOrigin = nil, true })
}

// WithBufferLimit sets how much of a response body the Middleware holds
// back (default DefaultBufferLimit). A handler that writes more, or
// flushes, gets its state sealed at that moment; changing the state after
// it panics (scone.State.Freeze) rather than being lost.
func WithBufferLimit(n int) Option {
	return optionFunc(func(c *config) { c.bufferLimit = n })
}

// WithTracerProvider makes the Middleware record its OpenTelemetry spans
// on tp: scone.restore and scone.commit, children of the request's span,
// with the service, the SCONE's version, the SCONEs' count and size and
// the outcome (never a SCONE's bytes or state). By default it records on
// the provider of the request's span, the one otelhttp.NewHandler started:
// wrap the Middleware's handler in otelhttp to trace requests. A request
// whose context holds no recording span records nothing.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) { c.tracer = tp })
}

// WithMetrics makes the Middleware record Prometheus metrics on reg, with
// the transport label "http": requests by how their state began, errors by
// scone code, SCONEs sealed and dropped, SCONE sizes, and the time spent
// restoring and sealing (the scone_hook_* metrics). Middleware of several
// services, and the hooks of other transports, may share reg. Middleware
// registers the metrics, and panics there, like prometheus.MustRegister, if
// reg holds other collectors under the same names.
func WithMetrics(reg prometheus.Registerer) Option {
	return optionFunc(func(c *config) { c.metrics = reg })
}

// PeerIdentity returns "x509-sha256:<hex>", the SHA-256 of the request's
// verified TLS client certificate, or "" when it has none.
func PeerIdentity(r *http.Request) string {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		return ""
	}
	sum := sha256.Sum256(r.TLS.VerifiedChains[0][0].Raw)
	return "x509-sha256:" + hex.EncodeToString(sum[:])
}

// ClientOption configures a Transport.
type ClientOption interface{ applyClient(*clientConfig) }

type clientOptionFunc func(*clientConfig)

func (f clientOptionFunc) applyClient(c *clientConfig) { f(c) }

type clientConfig struct {
	holder     scone.Holder
	holderFrom func(context.Context) scone.Holder
	concurrent bool
	group      func(*http.Request) string
}

// WithHolder makes the Transport keep every host's SCONEs in h (default: a
// scone.Dict per host, like a cookie jar's domains). SCONEs are matched by
// path only, so a single holder suits a client of one service: with several
// hosts, one host's SCONEs would be sent to the others.
func WithHolder(h scone.Holder) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.holder = h })
}

// WithHolderFromContext picks the holder of each request from its context:
// for a process that is the SCONE client of many users (a web back end
// holding each user's SCONEs). A request whose context gives nil fails.
func WithHolderFromContext(f func(ctx context.Context) scone.Holder) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.holderFrom = f })
}

// WithConcurrentCalls lets requests that share SCONEs run at the same time.
// By default the Transport serialises requests per holder and call group
// (WithCallGroup), because two requests that start from the same SCONE each
// get a successor, and the holder can keep only one.
func WithConcurrentCalls() ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.concurrent = true })
}

// WithCallGroup sets which requests take turns: those whose group is the
// same (default: the request's host).
func WithCallGroup(f func(*http.Request) string) ClientOption {
	return clientOptionFunc(func(c *clientConfig) { c.group = f })
}
