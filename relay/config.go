package relay

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/scone-project/scone"
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

	// IdentityKey is the metadata key that names the client when it has no
	// verified TLS client certificate. A request with neither has no
	// identity: its SCONEs pass through to the client, which may hold them
	// itself (and the relay counts them).
	IdentityKey string

	// Store keeps the SCONEs. Default: a MemoryStore with
	// DefaultMemoryConfig.
	Store Store

	// VerifyKeys, if set, is the services' key ring: every SCONE an upstream
	// sends must then authenticate before it is stored, and a reply whose
	// SCONEs do not is refused (and nothing of it stored). Without it the
	// relay checks only the layout and size, which needs no key.
	VerifyKeys *scone.KeyRing

	// MaxSize is the largest SCONE the relay stores, in bytes.
	MaxSize int

	// Now is the clock the relay decides by: whether a SCONE from an
	// upstream has expired (with VerifyKeys), and when the SCONEs of the
	// default Store expire. A Store given in Store reads its own clock
	// (MemoryConfig.Now, JetStreamConfig.Now, circulate's Config.Now):
	// give it the same one. Durations measured for metrics read time.Now.
	// Default: time.Now.
	Now func() time.Time

	// Logger receives the relay's logs. Default: discarded.
	Logger *slog.Logger
}

// DefaultConfig returns a Config with every default set; Upstreams remain
// to be given.
func DefaultConfig() Config {
	return Config{
		IdentityKey: "scone-client", // the metadata key naming the client
		MaxSize:     scone.DefaultMaxSize,
		Now:         time.Now,
	}
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
	if c.IdentityKey == "" {
		return errors.New("relay: empty identity key")
	}
	if c.MaxSize <= 0 || c.MaxSize > scone.MaxEnvelopeSize {
		return fmt.Errorf("relay: max size %d out of range", c.MaxSize)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Store == nil {
		mc := DefaultMemoryConfig()
		mc.Now = c.Now
		c.Store = NewMemoryStore(mc)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}
