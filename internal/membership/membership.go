// Package membership is the membership layer shared by cluster nodes and
// circulating relays: it starts a member's memberlist, publishes the live
// members as an immutable View (with its hash, which peers compare on
// every call), follows members coming up and going (their peer addresses
// travel in memberlist's node metadata), remembers when each member left
// (for the leases that wait it out), rejoins lost members after a
// partition, and caches one peer connection per live member. Each protocol
// package (cluster, circulate) keeps only its protocol.
package membership

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// ErrViewsDiffer is a call a peer refused, doing nothing, because it sees
// other live members than the caller: one of the two is cut off from the
// others' gossip, or has not yet seen a change, and they may not agree on
// who holds what.
var ErrViewsDiffer = errors.New("the peer sees other live members than this one")

// ErrNotMember is returned by Group.Peer for a name that is not a live
// member.
var ErrNotMember = errors.New("not a live member")

// ErrClosed is returned by Group.Peer once the group is closed.
var ErrClosed = errors.New("the member is closed")

// Config configures a member of a group.
type Config struct {
	// Name names the member in the group; unique.
	Name string
	// GossipAddr is where memberlist listens (UDP and TCP), host:port,
	// unless Memberlist has a Transport.
	GossipAddr string
	// PeerAddr is the address (host:port) the other members reach this
	// one's peer service at; it travels in the member's metadata.
	PeerAddr string
	// Seeds are gossip addresses of members to join; empty starts a group.
	Seeds []string
	// Memberlist is the memberlist configuration (its Name, Delegate and
	// Events are set here); nil: LANConfig().
	Memberlist *memberlist.Config
	// RejoinInterval is how often the member tries to join again one of
	// the members it lost (or its seeds, when it is alone); RejoinTimeout
	// is how long after the loss it keeps trying.
	RejoinInterval, RejoinTimeout time.Duration
	// Lease is how long the departure of a member is remembered (see
	// Group.Departures).
	Lease time.Duration
	// Timeout is the shortest time a peer connection attempt is given.
	Timeout time.Duration
	// Dial, if set, connects to the other members' peer service.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// DialOptions are added to the options of every peer connection.
	DialOptions []grpc.DialOption
	// PeerTLS, if set, secures the peer service with mutual TLS: its
	// Certificates are presented to the other members, and their
	// certificates are verified against its RootCAs, both when this member
	// calls them and when it serves them (ServerOptions; ClientCAs, if set,
	// verifies callers instead). nil: plaintext.
	PeerTLS *tls.Config
	// GossipKeys, if any, encrypt and authenticate gossip (memberlist's
	// keyring): the first key encrypts, every key decrypts. Each is 16, 24
	// or 32 bytes. A packet sealed with no key of the ring is dropped.
	GossipKeys [][]byte
	// InsecurePeers lets a member run off loopback without PeerTLS or
	// gossip keys (see Check), with a warning in the log.
	InsecurePeers bool
	// Now is the clock of Group.Joined (nil: time.Now).
	Now func() time.Time
	// OnChange, if set, is called after every change of the view, without
	// any lock held; it must not block.
	OnChange func()
	// Metrics, each optional, follow the group.
	Metrics Metrics
	// Logger receives the logs (and memberlist's, at debug level); Role
	// names the member in them ("node", "relay"). Default: discarded.
	Logger *slog.Logger
	Role   string
}

// Metrics are the gauges and counters a Group keeps up to date; any may be
// nil.
type Metrics struct {
	// Members is the number of live members in the view.
	Members prometheus.Gauge
	// Lost is the number of lost members still tried for a rejoin.
	Lost prometheus.Gauge
	// Rejoins counts rejoin attempts by outcome (label values "joined",
	// "failed").
	Rejoins *prometheus.CounterVec
}

// LANConfig returns memberlist's LAN configuration tuned to notice a dead
// member within a second; cluster.LANConfig documents it.
func LANConfig() *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	c.ProbeInterval = 150 * time.Millisecond
	c.ProbeTimeout = 75 * time.Millisecond
	c.SuspicionMult = 3
	c.SuspicionMaxTimeoutMult = 3
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = time.Second
	c.TCPTimeout = time.Second
	c.DeadNodeReclaimTime = time.Second
	return c
}

// View is the live members at one time. It is never modified.
type View struct {
	// Members are the names of the live members, sorted.
	Members []string
	// Hash identifies Members: two members with the same hash see the same
	// members (0 only for no view at all).
	Hash uint64
}

// NewView returns the view of members (in any order; it keeps a sorted
// copy).
func NewView(members []string) *View {
	v := &View{Members: slices.Clone(members)}
	slices.Sort(v.Members)
	h := fnv.New64a()
	for _, m := range v.Members {
		h.Write([]byte(m))
		h.Write([]byte{0})
	}
	v.Hash = h.Sum64()
	return v
}

// Others returns the members but self.
func (v *View) Others(self string) []string {
	out := make([]string, 0, len(v.Members))
	for _, m := range v.Members {
		if m != self {
			out = append(out, m)
		}
	}
	return out
}

// Refuses reports whether a peer call sent with the view hash sender must
// be refused (ErrViewsDiffer): the sender sees other members. 0 is a sender
// that does not say.
func (v *View) Refuses(sender uint64) bool { return sender != 0 && sender != v.Hash }

// Peer is what a Group keeps for a connection to a live member.
type Peer interface {
	// Close closes the connection; it is called once the member is gone,
	// moved to another address, or the group closes.
	Close() error
}

// Group is a live member of a group. It is safe for concurrent use.
type Group[P Peer] struct {
	cfg     Config
	connect func(*grpc.ClientConn) P
	ml      *memberlist.Memberlist
	view    atomic.Pointer[View]
	lost    *tracker

	mu       sync.Mutex
	closed   bool
	members  map[string]member    // live member → where and since when
	departed map[string]time.Time // member → when it left, by the monotonic clock
	peers    map[string]P

	stop chan struct{}
	done sync.WaitGroup
}

// member is what the group knows of a live member.
type member struct {
	addr   string    // peer address
	joined time.Time // when it came up at addr, by Config.Now
}

// Start starts a member: it begins gossiping, joins cfg.Seeds, and tries to
// rejoin the members it loses. connect wraps each new peer connection. It
// refuses a configuration that Check refuses.
func Start[P Peer](cfg Config, connect func(*grpc.ClientConn) P) (*Group[P], error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	g := Static(cfg, connect)
	mc := cfg.Memberlist
	if mc == nil {
		mc = LANConfig()
	}
	if len(cfg.GossipKeys) > 0 {
		ring, err := Keyring(cfg.GossipKeys)
		if err != nil {
			return nil, err
		}
		mc.Keyring, mc.SecretKey = ring, nil
		mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	}
	g.cfg.Memberlist = mc
	if cfg.Insecure() {
		g.cfg.Logger.Warn("INSECURE PEERS: links to the other members are not both encrypted and authenticated on a non-loopback address; anyone who reaches them can join, and read and write every client's state",
			g.cfg.Role, cfg.Name, "gossip", cfg.GossipAddr, "peer", cfg.PeerAddr, "peer_tls", cfg.PeerTLS != nil, "gossip_encrypted", len(cfg.GossipKeys) > 0 || encrypted(mc))
	}
	ml, err := startGossip(gossiper{
		Config: mc, Name: cfg.Name, Addr: cfg.GossipAddr, Seeds: cfg.Seeds,
		Logger: g.cfg.Logger, Delegate: delegate{cfg.PeerAddr}, Events: events[P]{g},
	})
	if err != nil {
		return nil, err
	}
	g.ml = ml
	g.done.Add(1)
	go func() {
		defer g.done.Done()
		g.lost.Run(g.stop, g.cfg.RejoinInterval, g.alone, g.rejoin)
	}()
	return g, nil
}

// Static returns a member that does not gossip: its view changes only by
// MemberUp and MemberGone (for tests, and members over an in-memory
// network).
func Static[P Peer](cfg Config, connect func(*grpc.ClientConn) P) *Group[P] {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Role == "" {
		cfg.Role = "member"
	}
	if cfg.RejoinInterval <= 0 {
		cfg.RejoinInterval = time.Second
	}
	if cfg.RejoinTimeout <= 0 {
		cfg.RejoinTimeout = time.Hour
	}
	g := &Group[P]{
		cfg:      cfg,
		connect:  connect,
		lost:     newTracker(cfg.Seeds, cfg.RejoinTimeout),
		members:  map[string]member{},
		departed: map[string]time.Time{},
		peers:    map[string]P{},
		stop:     make(chan struct{}),
	}
	g.view.Store(NewView(nil))
	return g
}

// View returns the live members as this member sees them now.
func (g *Group[P]) View() *View { return g.view.Load() }

// GossipAddr returns the address other members join this one at.
func (g *Group[P]) GossipAddr() string {
	if g.ml == nil {
		return ""
	}
	return g.ml.LocalNode().Address()
}

// Joined returns when the live member name came up at its current peer
// address, by Config.Now: a later time than a copy was placed on it says it
// restarted since, and lost the copy.
func (g *Group[P]) Joined(name string) (time.Time, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m, ok := g.members[name]
	return m.joined, ok
}

// Departures returns the members that left less than the Lease before now
// (by the monotonic clock: pass time.Now()), with when they did, whether
// they are back or not; older departures are forgotten.
func (g *Group[P]) Departures(now time.Time) map[string]time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out map[string]time.Time // nil, and no allocation, when none
	for name, at := range g.departed {
		if now.Sub(at) >= g.cfg.Lease {
			delete(g.departed, name)
			continue
		}
		if out == nil {
			out = make(map[string]time.Time, len(g.departed))
		}
		out[name] = at
	}
	return out
}

// Peer returns the connection to a live member, connecting on first use.
func (g *Group[P]) Peer(name string) (P, error) {
	var zero P
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return zero, ErrClosed // Close has closed the peers: a new one would never be
	}
	if p, ok := g.peers[name]; ok {
		return p, nil
	}
	m, ok := g.members[name]
	if !ok {
		return zero, fmt.Errorf("%s: %w", name, ErrNotMember)
	}
	creds := insecure.NewCredentials()
	if g.cfg.PeerTLS != nil {
		creds = credentials.NewTLS(clientTLS(g.cfg.PeerTLS))
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		// A member cut off and back, or restarted, is reached again within
		// 50 ms, not after gRPC's default second of backoff.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: g.cfg.Timeout,
		}),
	}
	if g.cfg.Dial != nil {
		opts = append(opts, grpc.WithContextDialer(g.cfg.Dial))
	}
	opts = append(opts, g.cfg.DialOptions...)
	c, err := grpc.NewClient("passthrough:///"+m.addr, opts...)
	if err != nil {
		return zero, err
	}
	p := g.connect(c)
	g.peers[name] = p
	return p, nil
}

// SetGossipKeys replaces the gossip keys while the member runs: keys[0]
// encrypts from now on, and every key of keys decrypts. To rotate without
// cutting the group, as with memberlist's keyring operations: give every
// member the new key as a second key (old, new); once all have it, make it
// the first everywhere (new, old); once all encrypt with it, remove the old
// one (new).
func (g *Group[P]) SetGossipKeys(keys [][]byte) error {
	if g.ml == nil {
		return errors.New("the member does not gossip")
	}
	ring := g.cfg.Memberlist
	if ring == nil || ring.Keyring == nil {
		return errors.New("gossip is not encrypted: a key can only be added at start")
	}
	if _, err := Keyring(keys); err != nil { // validate them all before changing any
		return err
	}
	kr := ring.Keyring
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil {
			return err
		}
	}
	if err := kr.UseKey(keys[0]); err != nil {
		return err
	}
	for _, old := range kr.GetKeys() {
		if !slices.ContainsFunc(keys, func(k []byte) bool { return string(k) == string(old) }) {
			if err := kr.RemoveKey(old); err != nil {
				return err
			}
		}
	}
	return nil
}

// Withdraw takes this member out of its own view, so that what it places
// from now on goes to the others (before leaving).
func (g *Group[P]) Withdraw() {
	g.mu.Lock()
	delete(g.members, g.cfg.Name)
	g.setView()
	g.mu.Unlock()
	g.changed()
}

// Leave tells the others this member is leaving, waiting up to timeout for
// the message to spread; Close must follow.
func (g *Group[P]) Leave(timeout time.Duration) error {
	if g.ml == nil {
		return nil
	}
	return g.ml.Leave(timeout)
}

// Close stops gossiping, as a crash would for the others, and closes the
// peer connections.
func (g *Group[P]) Close() {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return
	}
	g.closed = true
	g.mu.Unlock()
	close(g.stop)
	if g.ml != nil {
		g.ml.Shutdown()
	}
	g.done.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	for name, p := range g.peers {
		p.Close()
		delete(g.peers, name)
	}
}

// MemberUp records that a member is live at peer address addr (memberlist
// reports it; tests of a Static group call it).
func (g *Group[P]) MemberUp(name, addr string) {
	g.mu.Lock()
	if old, ok := g.members[name]; !ok || old.addr != addr {
		// New, or restarted elsewhere: a connection to its old address is
		// dead.
		g.dropPeer(name)
		g.members[name] = member{addr: addr, joined: g.cfg.Now()}
	}
	g.lost.Found(name)
	g.setView()
	g.mu.Unlock()
	g.changed()
}

// MemberGone records that a member left the live set at now, by the
// monotonic clock; gossipAddr is where to try to rejoin it (memberlist
// reports it; tests of a Static group call it).
func (g *Group[P]) MemberGone(name, gossipAddr string, now time.Time) {
	g.mu.Lock()
	delete(g.members, name)
	for m, at := range g.departed {
		if now.Sub(at) >= g.cfg.Lease {
			delete(g.departed, m) // no longer needed
		}
	}
	g.departed[name] = now
	if name != g.cfg.Name {
		g.lost.Lost(name, gossipAddr, now)
	}
	g.dropPeer(name)
	g.setView()
	g.mu.Unlock()
	g.changed()
}

// dropPeer closes the connection to name, if any; g.mu must be held.
func (g *Group[P]) dropPeer(name string) {
	if p, ok := g.peers[name]; ok {
		p.Close()
		delete(g.peers, name)
	}
}

// setView publishes the live members after a change; g.mu must be held.
func (g *Group[P]) setView() {
	names := make([]string, 0, len(g.members))
	for name := range g.members {
		names = append(names, name)
	}
	v := NewView(names)
	g.view.Store(v)
	if m := g.cfg.Metrics.Members; m != nil {
		m.Set(float64(len(v.Members)))
	}
	if m := g.cfg.Metrics.Lost; m != nil {
		m.Set(float64(g.lost.Len()))
	}
}

func (g *Group[P]) changed() {
	if g.cfg.OnChange != nil {
		g.cfg.OnChange()
	}
}

// alone reports whether the member sees no other.
func (g *Group[P]) alone() bool { return len(g.View().Members) <= 1 }

// rejoin tries to join one of the members lost, or the seeds, counting the
// outcome.
func (g *Group[P]) rejoin(addr string) {
	outcome := "joined"
	if _, err := g.ml.Join([]string{addr}); err != nil {
		outcome = "failed"
		g.cfg.Logger.Debug("rejoin failed", g.cfg.Role, g.cfg.Name, "addr", addr, "err", err)
	} else {
		g.cfg.Logger.Info("rejoined", g.cfg.Role, g.cfg.Name, "addr", addr)
	}
	if r := g.cfg.Metrics.Rejoins; r != nil {
		r.WithLabelValues(outcome).Inc()
	}
}

// delegate gives memberlist the member's metadata: its peer address.
type delegate struct{ peerAddr string }

func (d delegate) NodeMeta(int) []byte             { return []byte(d.peerAddr) }
func (d delegate) NotifyMsg([]byte)                {}
func (d delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d delegate) LocalState(bool) []byte          { return nil }
func (d delegate) MergeRemoteState([]byte, bool)   {}

// events follows membership.
type events[P Peer] struct{ g *Group[P] }

func (e events[P]) NotifyJoin(n *memberlist.Node)   { e.g.MemberUp(n.Name, string(n.Meta)) }
func (e events[P]) NotifyUpdate(n *memberlist.Node) { e.g.MemberUp(n.Name, string(n.Meta)) }
func (e events[P]) NotifyLeave(n *memberlist.Node)  { e.g.MemberGone(n.Name, n.Address(), time.Now()) }
