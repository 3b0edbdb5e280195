package circulate

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/hashicorp/memberlist"
	"go.opentelemetry.io/otel/trace"

	"github.com/scone-project/scone/internal/membership"
	"github.com/scone-project/scone/relay"
)

// Config configures a circulating Store. Start from DefaultConfig.
type Config struct {
	// Name names the relay in the group; unique. Required.
	Name string
	// GossipAddr is where memberlist listens (UDP and TCP), host:port.
	GossipAddr string
	// PeerAddr is the address (host:port) the other relays reach this one's
	// Circulation service at (serve it with Store.ServePeer). Required.
	PeerAddr string
	// Seeds are gossip addresses of relays to join; empty starts a group.
	Seeds []string
	// Copies is how many relays hold each client's SCONEs at any time: any
	// Copies-1 of them can fail at once with nothing acknowledged lost. The
	// copies move only in a group of more live relays than Copies (see
	// Store.Circulating).
	Copies int
	// Dwell is how long the primary holder keeps a client's copies before
	// handing them to the next relays; a write hands them on at once.
	Dwell time.Duration
	// QueryTimeout bounds the search for a client's SCONEs that this relay
	// does not hold: if some relay has not answered by then, and none that
	// did holds them, the request fails (Unavailable) rather than being
	// served without its state.
	QueryTimeout time.Duration
	// Timeout bounds every other call to another relay.
	Timeout time.Duration
	// Lease is how long after committing a copy as its primary (every
	// holder took the write or hand-off) a relay serves reads from it
	// without asking the others. It must be shorter than the time the group
	// takes to declare a silent relay dead (see cluster.LANConfig): a relay
	// that was paused or cut off longer than that may hold a copy the others
	// have since moved on from and written over. 0 always asks.
	Lease time.Duration
	// RejoinInterval is how often a relay tries to join again one of the
	// relays it lost (or its seeds, when it is alone), so that the sides of
	// a healed partition find each other; RejoinTimeout is how long after
	// the loss it keeps trying.
	RejoinInterval, RejoinTimeout time.Duration
	// MaxPerClient bounds each client's SCONEs, by count and bytes.
	MaxPerClient      int
	MaxBytesPerClient int
	// Memberlist, if set, is the memberlist configuration (its Name,
	// Delegate and Events are set by the Store); by default
	// cluster.LANConfig().
	Memberlist *memberlist.Config
	// Dial, if set, connects to other relays' Circulation service.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// PeerTLS, if set, runs the Circulation service over mutual TLS: the
	// relay presents its Certificates to the other relays and verifies
	// theirs against RootCAs (ClientCAs, if set, for the relays calling
	// it), both when it serves them and when it calls them. Give every
	// relay a certificate of one CA kept for the group, valid for its
	// PeerAddr and for client and server authentication. A process without
	// one can neither read nor write a client's copy. nil: plaintext.
	PeerTLS *tls.Config
	// GossipKeys, if any, encrypt and authenticate the memberlist gossip
	// (memberlist's keyring): the first key encrypts, every key decrypts;
	// each is 16, 24 or 32 bytes, the same on every relay. A process
	// without a key of the ring cannot join. Rotate them with
	// Store.SetGossipKeys (see docs/security.md).
	GossipKeys [][]byte
	// InsecurePeers lets a relay whose gossip or peer address is not on
	// loopback (127.0.0.0/8, ::1) start without PeerTLS and GossipKeys; New
	// refuses it otherwise. Then anyone who reaches those addresses can
	// join the group and read and write every client's SCONEs: set it only
	// on a network no one else reaches. The relay logs a warning.
	InsecurePeers bool
	// Now is the clock expiry and dwell are read by (nil: time.Now). The
	// Store reads it less MaxClockSkew, everywhere: the spans it measures
	// (dwell, how long a copy has been held or a relay lost) are
	// differences of two readings, which the shift leaves as they are.
	Now func() time.Time
	// MaxClockSkew is how far Now may run ahead of the servers' clocks
	// without the group losing state, as relay.Config.MaxClockSkew: the
	// servers are the authority on expiry, so every expiry decision of the
	// Store (whether a copy is served, answered to a query, taken, handed
	// on or dropped) is by Now less MaxClockSkew. A relay whose clock runs
	// ahead by less keeps, serves and passes on a client's live copies as
	// the others do; one ahead by more would serve an empty state while
	// the others hold the real one. The price: a copy is kept up to
	// MaxClockSkew past the expiry of its last SCONE, and a client that
	// comes back after its SCONEs expired is refused as expired (not
	// started afresh, unless its servers reset on failure) until then. 0
	// tolerates no skew. Default: relay.DefaultMaxClockSkew.
	MaxClockSkew time.Duration
	// Logger receives the store's logs. Default: discarded.
	Logger *slog.Logger

	// TracerProvider receives a scone.circulate.handoff span for each
	// hand-off. A query of the other relays is a scone.circulate.query
	// event on the span of the read that asked (the relay's
	// scone.relay.store.get). Default: otel.GetTracerProvider(), which
	// records nothing until the process sets one.
	TracerProvider trace.TracerProvider
}

// DefaultConfig returns a Config with every default set; Name and PeerAddr
// remain to be given.
func DefaultConfig() Config {
	return Config{
		GossipAddr:        "127.0.0.1:7947",
		Copies:            2,
		Dwell:             500 * time.Millisecond,
		QueryTimeout:      time.Second,
		Timeout:           time.Second,
		Lease:             300 * time.Millisecond,
		RejoinInterval:    time.Second,
		RejoinTimeout:     time.Hour,
		MaxPerClient:      64,
		MaxBytesPerClient: 1 << 20,
		MaxClockSkew:      relay.DefaultMaxClockSkew,
	}
}

func (c *Config) validate() error {
	switch {
	case c.Name == "":
		return errors.New("circulate: the relay needs a name")
	case c.PeerAddr == "":
		return errors.New("circulate: the relay needs a peer address")
	case c.Copies < 1:
		return fmt.Errorf("circulate: copies must be at least 1, not %d", c.Copies)
	case c.Dwell <= 0:
		return errors.New("circulate: the dwell time must be positive")
	case c.Lease < 0:
		return errors.New("circulate: the lease must not be negative")
	case c.QueryTimeout <= 0 || c.Timeout <= 0 || c.RejoinInterval <= 0 || c.RejoinTimeout <= 0:
		return errors.New("circulate: timeouts must be positive")
	case c.MaxPerClient < 1 || c.MaxBytesPerClient < 1:
		return errors.New("circulate: per-client bounds must be positive")
	case c.MaxClockSkew < 0:
		return fmt.Errorf("circulate: max clock skew %v is negative", c.MaxClockSkew)
	}
	if err := c.membership().Check(); err != nil {
		return fmt.Errorf("circulate: %w", err)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if skew, now := c.MaxClockSkew, c.Now; skew > 0 {
		// The one clock of the Store (every s.cfg.Now), set back: a copy
		// is expired once it has been for MaxClockSkew.
		c.Now = func() time.Time { return now().Add(-skew) }
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// membership returns the configuration of the relay's membership (without
// its hooks: OnChange, Metrics).
func (c *Config) membership() membership.Config {
	return membership.Config{
		Name: c.Name, GossipAddr: c.GossipAddr, PeerAddr: c.PeerAddr, Seeds: c.Seeds,
		Memberlist: c.Memberlist, RejoinInterval: c.RejoinInterval, RejoinTimeout: c.RejoinTimeout,
		Lease: c.Lease, Timeout: c.Timeout, Dial: c.Dial, Now: c.Now,
		PeerTLS: c.PeerTLS, GossipKeys: c.GossipKeys, InsecurePeers: c.InsecurePeers,
		Logger: c.Logger, Role: "relay",
	}
}
