package cluster

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
	"github.com/scone-project/scone/sconegrpc"
)

// Config configures a Node. Start from DefaultConfig.
type Config struct {
	// Name names the node in the cluster; unique. Required.
	Name string
	// GossipAddr is where memberlist listens (UDP and TCP), host:port.
	GossipAddr string
	// PeerAddr is the address (host:port) other nodes reach this node's Peer
	// service at; it travels in the node's memberlist metadata. Required.
	PeerAddr string
	// Seeds are gossip addresses of nodes to join; empty starts a cluster.
	Seeds []string
	// K is how many nodes keep each client's record: any K-1 of them can
	// fail at once with nothing acknowledged lost. KFor, if set, gives a
	// service its own K (the patent's per-service quality of service).
	K    int
	KFor func(service string) int
	// Degrade, if set, lets a write acknowledged by fewer than K nodes (but
	// at least one) succeed, with a "scone-copies" header in the reply
	// saying how many; by default such a call fails (Unavailable).
	Degrade bool
	// Identity names the client of each call: the cluster keeps a client's
	// SCONEs under this name, so it must be one the caller cannot claim
	// falsely. A call it names no one ("") is served without state; an
	// error refuses the call. Default:
	// sconegrpc.CertIdentity(sconegrpc.CertURI), the SPIFFE ID of a client
	// certificate that TLS verified (serve the clients with
	// tls.RequireAndVerifyClientCert), which stays the same when the
	// certificate is renewed. Give your own function to verify your own
	// credentials, for example a bearer token checked by your auth library.
	Identity sconegrpc.Identity
	// IdentityHeader, if set, names clients by this metadata key instead of
	// Identity (sconegrpc.HeaderIdentity). It authenticates nothing: any
	// caller that reaches the node can name any client and read and change
	// that client's state. Set it only behind a proxy that authenticates
	// every caller and sets the key itself, on a network only that proxy
	// reaches (or in tests on loopback).
	IdentityHeader string
	// PeerTLS, if set, runs the Peer service over mutual TLS: the node
	// presents its Certificates to the other nodes and verifies theirs
	// against RootCAs (ClientCAs, if set, for the nodes calling it), both
	// when it serves them and when it calls them. Give every node a
	// certificate of one CA kept for the cluster, valid for the address
	// the others reach it at (PeerAddr) and for client and server
	// authentication. A process without one can neither read nor write a
	// record. nil: plaintext.
	PeerTLS *tls.Config
	// GossipKeys, if any, encrypt and authenticate the memberlist gossip
	// (memberlist's keyring): the first key encrypts, every key decrypts;
	// each is 16, 24 or 32 bytes (AES-128, -192 or -256), the same on every
	// node. A process without a key of the ring cannot join. Rotate them
	// with Node.SetGossipKeys (see docs/security.md).
	GossipKeys [][]byte
	// InsecurePeers lets a node whose gossip or peer address is not on
	// loopback (127.0.0.0/8, ::1) start without PeerTLS and GossipKeys;
	// New refuses it otherwise. Then anyone who reaches those addresses can
	// join the cluster and read and write every client's state: set it only
	// on a network no one else reaches. The node logs a warning.
	InsecurePeers bool
	// Timeout bounds each call to another node.
	Timeout time.Duration
	// Lease is how recently the other owners of a record must have agreed
	// with this node on the members for it to serve the record from its own
	// copy, without reading theirs. It must be shorter than the time the
	// cluster takes to declare a silent node dead (see LANConfig); 0 always
	// reads every owner.
	Lease time.Duration
	// RepairInterval is how often a node re-checks every record it holds,
	// besides at every change of membership.
	RepairInterval time.Duration
	// RejoinInterval is how often a node tries to join again one of the
	// members it lost (or its seeds, when it is alone), so that the sides
	// of a healed partition find each other; RejoinTimeout is how long
	// after the loss it keeps trying. See package internal/membership.
	RejoinInterval, RejoinTimeout time.Duration
	// Memberlist, if set, is used as the memberlist configuration (its Name,
	// Delegate and Events are set by the Node); by default it is
	// LANConfig().
	Memberlist *memberlist.Config
	// Dial, if set, connects to other nodes' Peer service (for tests: an
	// in-memory network).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Now is the node's clock (nil: time.Now).
	Now func() time.Time
	// Logger receives the node's logs. Default: discarded.
	Logger *slog.Logger

	// TracerProvider, if set, receives the hook's OpenTelemetry spans:
	// scone.cluster.read, scone.restore, scone.commit and
	// scone.cluster.write (with a scone.owner.write and a scone.owner.ack
	// event per owner), children of the call's span. Default: the provider
	// of the call's span (the one otelgrpc's stats handler started); a
	// call whose context holds no recording span records nothing.
	TracerProvider trace.TracerProvider
}

// DefaultConfig returns a Config with every default set; Name and PeerAddr
// remain to be given.
func DefaultConfig() Config {
	return Config{
		GossipAddr:     "127.0.0.1:7946",
		K:              2,
		Timeout:        time.Second,
		Lease:          150 * time.Millisecond,
		RepairInterval: 10 * time.Second,
		RejoinInterval: time.Second,
		RejoinTimeout:  time.Hour,
	}
}

// LANConfig returns memberlist's LAN configuration tuned to notice a dead
// node within a second: a probe every 150 ms with a 75 ms timeout, and a
// suspicion of 3 probe intervals (for clusters under ten nodes, growing to
// at most 9 while no other member confirms it) before a silent node is
// declared dead, so at least 0.45 s, longer than the default Lease; and a
// full state exchange with a random live member every second. A partition
// ends within seconds of healing because the Node tries to rejoin the
// members it lost (Config.RejoinInterval). Faster probing notices sooner
// but declares busy nodes dead more often. docs/modes.md gives the measured
// recovery times.
func LANConfig() *memberlist.Config { return membership.LANConfig() }

func (c *Config) validate() error {
	switch {
	case c.Name == "":
		return errors.New("cluster: the node needs a name")
	case c.PeerAddr == "":
		return errors.New("cluster: the node needs a peer address")
	case c.K < 1:
		return fmt.Errorf("cluster: k must be at least 1, not %d", c.K)
	case c.Timeout <= 0:
		return errors.New("cluster: the peer timeout must be positive")
	case c.Lease < 0:
		return errors.New("cluster: the lease must not be negative")
	}
	if err := c.membership().Check(); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	switch {
	case c.IdentityHeader != "":
		c.Identity = sconegrpc.HeaderIdentity(c.IdentityHeader)
	case c.Identity == nil:
		c.Identity = sconegrpc.CertIdentity(sconegrpc.CertURI)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.RepairInterval <= 0 {
		c.RepairInterval = 10 * time.Second
	}
	if c.RejoinInterval <= 0 {
		c.RejoinInterval = time.Second
	}
	if c.RejoinTimeout <= 0 {
		c.RejoinTimeout = time.Hour
	}
	return nil
}

// membership returns the configuration of the node's membership (without
// its hooks: OnChange, Metrics).
func (c *Config) membership() membership.Config {
	mc := c.Memberlist
	if mc == nil {
		mc = LANConfig()
	}
	return membership.Config{
		Name: c.Name, GossipAddr: c.GossipAddr, PeerAddr: c.PeerAddr, Seeds: c.Seeds,
		Memberlist: mc, RejoinInterval: c.RejoinInterval, RejoinTimeout: c.RejoinTimeout,
		Lease: c.Lease, Timeout: c.Timeout, Dial: c.Dial, Now: c.Now,
		PeerTLS: c.PeerTLS, GossipKeys: c.GossipKeys, InsecurePeers: c.InsecurePeers,
		Logger: c.Logger, Role: "node",
	}
}

// k returns how many copies a service's records need.
func (c *Config) k(service string) int {
	if c.KFor != nil {
		if k := c.KFor(service); k > 0 {
			return k
		}
	}
	return c.K
}
