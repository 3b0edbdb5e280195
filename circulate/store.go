package circulate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/circulate/circulatepb"
	"github.com/scone-project/scone/internal/membership"
	"github.com/scone-project/scone/relay"
)

// Store is a relay.Store in which a client's SCONEs circulate among the
// relays of a group: Config.Copies relays hold them in memory at a time,
// and pass them on. See the package documentation.
type Store struct {
	cfg     Config
	rules   rules // the decisions (see core.go)
	members *membership.Group[peerConn]
	peer    *grpc.Server
	reg     *prometheus.Registry
	m       *metrics

	mu     sync.Mutex
	slots  map[string]*slot // by client key
	routes map[string]route // client key → where its last read found the primary

	changed chan struct{} // membership changed
	due     chan *slot    // slots written to: their copies move on now
	sem     chan struct{} // bounds the hand-offs in flight
	leaving atomic.Bool   // Leave runs: place nothing here, take no hand-off
	moving  atomic.Int32  // 1 if copies move, 2 if not, 0 before the first look (see watch)
	stop    chan struct{}
	done    sync.WaitGroup
}

// route is where a read found a client's copies: the write of its reply
// goes to that primary.
type route struct {
	primary string // "" when no relay held them: the write creates them
	at      time.Time
}

var _ relay.Store = (*Store)(nil)

// New starts a Store: it begins gossiping and joins cfg.Seeds. Serve its
// Circulation service with ServePeer.
func New(cfg Config) (*Store, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:     cfg,
		reg:     prometheus.NewRegistry(),
		slots:   map[string]*slot{},
		routes:  map[string]route{},
		changed: make(chan struct{}, 1),
		due:     make(chan *slot, 1024),
		sem:     make(chan struct{}, handoffWorkers),
		stop:    make(chan struct{}),
	}
	s.m = newMetrics(s.reg, s.held)
	s.peer = grpc.NewServer(membership.ServerOptions(cfg.PeerTLS)...)
	pb.RegisterCirculationServer(s.peer, peerServer{s: s})

	s.rules = newRules(cfg)
	mcfg := cfg.membership()
	mcfg.OnChange = s.notifyChange
	mcfg.Metrics = membership.Metrics{Members: s.m.members, Rejoins: s.m.rejoins}
	g, err := membership.Start(mcfg, newPeerConn)
	if err != nil {
		return nil, fmt.Errorf("circulate: %w", err)
	}
	s.members = g
	s.done.Add(1)
	go s.loop()
	return s, nil
}

// peerConn is a connection to another relay's Circulation service.
type peerConn struct {
	pb.CirculationClient
	conn *grpc.ClientConn
}

func newPeerConn(c *grpc.ClientConn) peerConn { return peerConn{pb.NewCirculationClient(c), c} }

// Close closes the connection.
func (p peerConn) Close() error { return p.conn.Close() }

// ServePeer serves the Circulation service (the other relays' queries,
// hand-offs and writes) on lis until Close.
func (s *Store) ServePeer(lis net.Listener) error { return s.peer.Serve(lis) }

// SetGossipKeys replaces the gossip keys while the relay runs (see
// Config.GossipKeys): keys[0] encrypts from now on, every key decrypts. It
// fails if the relay started without gossip keys. To rotate without
// cutting the group: give every relay the new key as a second key
// (old, new); once all have it, make it first everywhere (new, old); once
// all encrypt with it, remove the old one (new).
func (s *Store) SetGossipKeys(keys [][]byte) error {
	if err := s.members.SetGossipKeys(keys); err != nil {
		return fmt.Errorf("circulate: %w", err)
	}
	return nil
}

// Metrics returns the registry of the store's Prometheus metrics.
func (s *Store) Metrics() *prometheus.Registry { return s.reg }

// GossipAddr returns the address other relays join this one at.
func (s *Store) GossipAddr() string { return s.members.GossipAddr() }

// Name returns the relay's name in the group.
func (s *Store) Name() string { return s.cfg.Name }

// Members returns the names of the live relays, this one included, sorted.
func (s *Store) Members() []string { return slices.Clone(s.members.View().Members) }

// Copies returns the copies this relay holds now, by client key: their
// generation and hop.
func (s *Store) Copies() map[string][2]uint64 {
	out := map[string][2]uint64{}
	now := s.cfg.Now()
	for key, sl := range s.snapshot() {
		if it := sl.state().it; it != nil && it.expires.After(now) {
			out[key] = [2]uint64{it.gen, it.hop}
		}
	}
	return out
}

// held counts the copies this relay holds (expired ones included until
// swept).
func (s *Store) held() float64 {
	n := 0
	for _, sl := range s.snapshot() {
		if sl.state().it != nil {
			n++
		}
	}
	return float64(n)
}

// Close leaves the group at once, as a crash would for the others: the
// copies held here are recreated elsewhere from their other copies.
func (s *Store) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	s.members.Close()
	s.peer.Stop()
	s.done.Wait()
	return nil
}

// Circulating returns nil if the copies move from relay to relay: this
// relay sees more live relays than Config.Copies. Otherwise it returns why
// not: with as many relays as copies or fewer, every live relay holds every
// client's copies, and hand-offs only change which of them is the primary
// (static replication); with fewer relays than copies, no request is
// served. The relay logs a warning whenever its group falls to that size.
func (s *Store) Circulating() error {
	n := len(s.members.View().Members)
	if n > s.cfg.Copies {
		return nil
	}
	return fmt.Errorf("circulate: copies do not move: %d live relays for %d copies each, so every relay holds every client's SCONEs; run at least %d relays", n, s.cfg.Copies, s.cfg.Copies+1)
}

// watch logs, loudly, when the group falls to no more relays than copies,
// and when copies move again.
func (s *Store) watch() {
	err := s.Circulating()
	state := int32(1)
	if err != nil {
		state = 2
	}
	s.m.moving.Set(float64(2 - state))
	if s.moving.Swap(state) == state {
		return
	}
	if err != nil {
		s.cfg.Logger.Warn("client SCONEs are not circulating: "+err.Error(), "relay", s.cfg.Name, "members", s.Members(), "copies", s.cfg.Copies)
		return
	}
	s.cfg.Logger.Info("client SCONEs circulate", "relay", s.cfg.Name, "members", len(s.Members()), "copies", s.cfg.Copies)
}

// Leave hands every copy this relay holds to the next relays, tells the
// group it is leaving, and closes. While it hands them on, it places
// nothing on itself and takes no hand-off, but the others still see it,
// so they take its hand-offs (a relay that took itself out of its own
// view would send puts the others refuse: their views would differ).
//
// A hand-off that fails (a relay of the next hop was busy moving the same
// client, or did not answer) is tried again until timeout has passed; the
// copies still here then are counted in the error.
func (s *Store) Leave(timeout time.Duration) error {
	s.leaving.Store(true)
	deadline := time.Now().Add(timeout)
	left := s.snapshot()
retry:
	for len(left) > 0 {
		for key, sl := range left {
			if !live(sl.state().it, s.cfg.Now()) || s.handoff(sl, nil, true) || !live(sl.state().it, s.cfg.Now()) {
				delete(left, key) // gone, handed on, or moved meanwhile by the loop
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-time.After(s.cfg.Timeout / 4):
		case <-s.stop:
			break retry
		}
	}
	failed := len(left)
	err := s.members.Leave(timeout)
	s.Close()
	if failed > 0 {
		err = errors.Join(fmt.Errorf("circulate: %d copies not handed over on leaving", failed), err)
	}
	return err
}

// slot returns the slot of key, made if needed.
func (s *Store) slot(key string) *slot {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.slots[key]
	if sl == nil {
		sl = newSlot()
		s.slots[key] = sl
	}
	return sl
}

// lockSlot returns key's slot, locked.
func (s *Store) lockSlot(ctx context.Context, key string) (*slot, error) {
	for {
		sl := s.slot(key)
		if err := sl.acquire(ctx); err != nil {
			return nil, scone.WrapError(scone.CodeUnavailable, "circulate: the client's copy is busy", err)
		}
		if !sl.state().dead {
			return sl, nil
		}
		sl.release() // removed meanwhile: a new one is in the map
	}
}

// snapshot returns the slots.
func (s *Store) snapshot() map[string]*slot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]*slot, len(s.slots))
	for k, v := range s.slots {
		out[k] = v
	}
	return out
}

// conn returns a connection to a live member's Circulation service.
func (s *Store) conn(name string) (pb.CirculationClient, error) {
	p, err := s.members.Peer(name)
	if err != nil {
		return nil, scone.WrapError(scone.CodeUnavailable, "circulate: "+name+" is not a live relay", errors.Join(errNotSent, err))
	}
	return p, nil
}

// viewHash returns the hash of the live members this relay sees.
func (s *Store) viewHash() uint64 { return s.members.View().Hash }

// errViewsDiffer is a query another relay refused because it sees other
// live relays than this one (see membership.ErrViewsDiffer).
var errViewsDiffer = membership.ErrViewsDiffer

// notifyChange runs the loop's pass at once, after a change of membership.
func (s *Store) notifyChange() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// knowledge returns what this relay knows of the group now, for the rules.
func (s *Store) knowledge() knowledge {
	v := s.members.View()
	k := knowledge{members: v.Members, joined: map[string]time.Time{}, departed: s.members.Departures(time.Now())}
	if s.leaving.Load() {
		// Placed on the others alone.
		k.members = slices.DeleteFunc(slices.Clone(v.Members), func(m string) bool { return m == s.cfg.Name })
	}
	for _, m := range v.Members {
		if at, ok := s.members.Joined(m); ok {
			k.joined[m] = at
		}
	}
	return k
}
