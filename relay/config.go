package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/sconegrpc"
)

// Config configures a relay. Start from DefaultConfig.
type Config struct {
	// Upstreams are the addresses (host:port) of the servers the relay
	// forwards to, all serving the same services. Requests go round-robin;
	// an upstream that fails is taken out until it answers again. Required.
	Upstreams []string

	// TLS, if set, makes the relay serve TLS instead of plaintext HTTP/2
	// (h2c). Require client certificates (tls.RequireAndVerifyClientCert)
	// to identify clients by them.
	TLS *tls.Config

	// UpstreamTLS, if set, is used to reach the upstreams; nil means
	// plaintext HTTP/2.
	UpstreamTLS *tls.Config

	// Dial, if set, connects to an upstream's address (for tests and
	// examples: an in-memory network). Default: TCP.
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	// Identity names the client of each call: the relay keeps a client's
	// SCONEs under this name, so it must be one the caller cannot claim
	// falsely. A call it names no one ("") has no identity: its SCONEs pass
	// through to the client, which may hold them itself (and the relay
	// counts them); an error refuses the call. Default:
	// sconegrpc.CertIdentity(sconegrpc.CertURI), the SPIFFE ID of a client
	// certificate that TLS verified (set TLS with
	// tls.RequireAndVerifyClientCert), which stays the same when the
	// certificate is renewed. Give your own function to verify your own
	// credentials, for example a bearer token checked by your auth library.
	Identity sconegrpc.Identity

	// IdentityHeader, if set, names clients by this metadata key instead of
	// Identity (sconegrpc.HeaderIdentity), and the relay removes the key
	// from every call it forwards. It authenticates nothing: any caller
	// that reaches the relay can name any client and read and change that
	// client's state. Set it only behind a proxy that authenticates every
	// caller and sets the key itself, on a network only that proxy reaches.
	IdentityHeader string

	// Store keeps the SCONEs. Default: a MemoryStore with
	// DefaultMemoryConfig.
	Store Store

	// MaxSize is the largest SCONE the relay stores, in bytes.
	MaxSize int

	// Now is the clock the relay decides by: when the SCONEs of the
	// default Store expire, with MaxClockSkew to spare. A Store given
	// in Store reads its own clock (MemoryConfig.Now, JetStreamConfig.Now,
	// circulate's Config.Now) and tolerance (their MaxClockSkew): give it
	// the same ones. Durations measured for metrics read time.Now.
	// Default: time.Now.
	Now func() time.Time

	// MaxClockSkew is how far Now may run ahead of the servers' clocks
	// without the relay losing state. The servers are the authority on
	// expiry: they refuse an expired SCONE (CodeExpired), and the holder
	// keeps its state. A relay that dropped a SCONE it thought expired, by
	// a clock running ahead, would attach nothing to the client's next
	// request, and the server would start the session afresh: acknowledged
	// state lost through the relay's clock error. So the relay decides
	// expiry by Now minus MaxClockSkew: it keeps and attaches a SCONE
	// until its expiry plus MaxClockSkew by Now.
	//
	// The price: an expired SCONE is kept up to MaxClockSkew longer, and a
	// client that comes back after its SCONE expired is refused as expired
	// (not started afresh, unless its servers reset on failure) until then.
	// A relay whose clock runs ahead by more than MaxClockSkew drops live
	// SCONEs, as one with no tolerance would. 0 tolerates no skew.
	// Default: DefaultMaxClockSkew.
	MaxClockSkew time.Duration

	// RetryMethods names the methods, besides those the proto declares
	// idempotent or free of side effects, that the relay re-sends to another
	// upstream when one fails before answering: "/pkg.Service/" for every
	// method of a service, "/pkg.Service/Method" for one.
	//
	// Re-sending a call that changes state is safe for the state its
	// servers keep in SCONEs, which is why a relay may do what a proxy
	// that holds no SCONEs may not: the re-sent call carries the SCONEs the
	// lost attempt carried, and the SCONEs the lost attempt sealed reached
	// no holder, so its change is as if never made and the re-sent call
	// makes it once. Effects outside SCONEs are not covered: a method that
	// sends an e-mail, or writes to a database, may do so once per attempt;
	// list it only if the application makes those effects idempotent. See
	// docs/modes.md.
	RetryMethods []string

	// RetryAttempts is the most attempts a call of a retried method gets,
	// the first included: 2 to 5 (the limit of gRPC's retry policy, which
	// the relay uses towards its upstreams). 1 turns re-sending off, for
	// declared idempotent methods too. An attempt is re-sent only if it
	// failed Unavailable before any reply header or message reached the
	// relay (a refused or reset connection, a server gone mid-call, no
	// upstream up), so nothing of it has gone to the client; a stream's
	// messages are replayed from gRPC's buffer (256 KiB per call; a
	// stream that sent more is not re-sent). 0 means
	// DefaultRetryAttempts.
	RetryAttempts int

	// RetryBackoff is the longest wait before the first re-send of a
	// call; each next one waits up to twice as long, at random (gRPC's
	// retry backoff). The time a call spends waiting to be re-sent is
	// bounded by RetryBackoff × (2^(RetryAttempts-1) - 1), and its
	// deadline bounds the whole. 0 means DefaultRetryBackoff.
	RetryBackoff time.Duration

	// Logger receives the relay's logs. Default: discarded.
	Logger *slog.Logger

	// TracerProvider receives the relay's OpenTelemetry spans: scone.relay
	// for each call (a child of the trace context the call came with, in
	// its W3C traceparent metadata, and the parent of the upstream call),
	// with scone.relay.store.get and scone.relay.store.apply for the
	// store's read and write. Default: otel.GetTracerProvider(), which
	// records nothing until the process sets one.
	TracerProvider trace.TracerProvider
}

// DefaultRetryAttempts is the default of Config.RetryAttempts: the first
// attempt and up to three re-sends, enough to pass over two dead upstreams.
const DefaultRetryAttempts = 4

// DefaultRetryBackoff is the default of Config.RetryBackoff: the three
// re-sends of a call wait 350 ms at most in all, short enough for a client's
// deadline, long enough for the relay to see that an upstream is down.
const DefaultRetryBackoff = 50 * time.Millisecond

// DefaultMaxClockSkew is the default of every holder's MaxClockSkew
// (Config, MemoryConfig, JetStreamConfig, and circulate's Config): clocks
// kept by NTP are within milliseconds of each other; a minute allows for
// one that lost its time source for a while.
const DefaultMaxClockSkew = time.Minute

// DefaultConfig returns a Config with every default set; Upstreams remain
// to be given.
func DefaultConfig() Config {
	return Config{
		MaxSize:       scone.DefaultMaxSize,
		Now:           time.Now,
		MaxClockSkew:  DefaultMaxClockSkew,
		RetryAttempts: DefaultRetryAttempts,
		RetryBackoff:  DefaultRetryBackoff,
	}
}

// expiryClock returns the clock a holder decides expiry by: now, set back
// by skew, so that a SCONE counts as expired only when it has been for skew
// by now. See Config.MaxClockSkew.
func expiryClock(now func() time.Time, skew time.Duration) func() time.Time {
	if skew <= 0 {
		return now
	}
	return func() time.Time { return now().Add(-skew) }
}

func (c *Config) validate() error {
	if len(c.Upstreams) == 0 {
		return errors.New("relay: no upstreams")
	}
	for _, u := range c.Upstreams {
		if _, _, err := net.SplitHostPort(u); err != nil {
			return fmt.Errorf("relay: upstream %q is not host:port: %v", u, err)
		}
	}
	switch {
	case c.IdentityHeader != "":
		c.Identity = sconegrpc.HeaderIdentity(c.IdentityHeader)
	case c.Identity == nil:
		c.Identity = sconegrpc.CertIdentity(sconegrpc.CertURI)
	}
	if c.MaxSize <= 0 || c.MaxSize > scone.MaxEnvelopeSize {
		return fmt.Errorf("relay: max size %d out of range", c.MaxSize)
	}
	if c.MaxClockSkew < 0 {
		return fmt.Errorf("relay: max clock skew %v is negative", c.MaxClockSkew)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	for _, m := range c.RetryMethods {
		if !validRetryPattern(m) {
			return fmt.Errorf("relay: retry method %q: want /pkg.Service/ or /pkg.Service/Method", m)
		}
	}
	if c.RetryAttempts == 0 {
		c.RetryAttempts = DefaultRetryAttempts
	}
	if c.RetryAttempts < 1 || c.RetryAttempts > maxRetryAttempts {
		return fmt.Errorf("relay: retry attempts %d: want 1 to %d", c.RetryAttempts, maxRetryAttempts)
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.RetryBackoff < time.Millisecond {
		return fmt.Errorf("relay: retry backoff %v: want 1ms or more", c.RetryBackoff)
	}
	if c.Store == nil {
		mc := DefaultMemoryConfig()
		mc.Now, mc.MaxClockSkew = c.Now, c.MaxClockSkew
		c.Store = NewMemoryStore(mc)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}
