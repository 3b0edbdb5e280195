package circulate

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/circulate/circulatepb"
	"github.com/scone-project/scone/cluster"
	"github.com/scone-project/scone/internal/gossip"
	"github.com/scone-project/scone/internal/rejoin"
	"github.com/scone-project/scone/relay"
)

// Store is a relay.Store in which no relay keeps a client's SCONEs: they
// circulate among the relays of a group. See the package documentation.
type Store struct {
	cfg  Config
	ml   *memberlist.Memberlist
	peer *grpc.Server
	reg  *prometheus.Registry
	m    *metrics

	mu      sync.Mutex
	slots   map[string]*slot     // by client key
	addrs   map[string]string    // live member → Circulation address
	joined  map[string]time.Time // live member → when it joined at that address
	goneAt  map[string]time.Time // member → when it left, by the monotonic clock
	conns   map[string]*grpc.ClientConn
	members []string         // sorted live members, this relay included
	view    atomic.Uint64    // a hash of members (read without mu)
	routes  map[string]route // client key → where its last read found the primary

	lost    *rejoin.Tracker // relays lost, to join again after a partition
	changed chan struct{}   // membership changed
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
		addrs:   map[string]string{},
		joined:  map[string]time.Time{},
		goneAt:  map[string]time.Time{},
		conns:   map[string]*grpc.ClientConn{},
		routes:  map[string]route{},
		lost:    rejoin.New(cfg.Seeds, cfg.RejoinTimeout),
		changed: make(chan struct{}, 1),
		stop:    make(chan struct{}),
	}
	s.m = newMetrics(s.reg, s.held)
	s.peer = grpc.NewServer()
	pb.RegisterCirculationServer(s.peer, peerServer{s: s})

	mc := cfg.Memberlist
	if mc == nil {
		mc = cluster.LANConfig()
	}
	ml, err := gossip.Start(gossip.Member{
		Config: mc, Name: cfg.Name, Addr: cfg.GossipAddr, Seeds: cfg.Seeds,
		Logger: cfg.Logger, Delegate: delegate{s}, Events: events{s},
	})
	if err != nil {
		return nil, fmt.Errorf("circulate: %w", err)
	}
	s.ml = ml
	s.done.Add(2)
	go s.loop()
	go func() {
		defer s.done.Done()
		s.lost.Run(s.stop, cfg.RejoinInterval, func() bool { return len(s.Members()) <= 1 }, s.rejoin)
	}()
	return s, nil
}

// ServePeer serves the Circulation service (the other relays' queries,
// hand-offs and writes) on lis until Close.
func (s *Store) ServePeer(lis net.Listener) error { return s.peer.Serve(lis) }

// Metrics returns the registry of the store's Prometheus metrics.
func (s *Store) Metrics() *prometheus.Registry { return s.reg }

// GossipAddr returns the address other relays join this one at.
func (s *Store) GossipAddr() string { return s.ml.LocalNode().Address() }

// Name returns the relay's name in the group.
func (s *Store) Name() string { return s.cfg.Name }

// Members returns the names of the live relays, this one included, sorted.
func (s *Store) Members() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.members)
}

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
	s.ml.Shutdown()
	s.peer.Stop()
	s.done.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, c := range s.conns {
		c.Close()
		delete(s.conns, name)
	}
	return nil
}

// Leave hands every copy this relay holds to the next relays, tells the
// group it is leaving, and closes.
func (s *Store) Leave(timeout time.Duration) error {
	s.mu.Lock()
	delete(s.addrs, s.cfg.Name) // hand-offs now place copies elsewhere
	s.setMembers()
	s.mu.Unlock()
	failed := 0
	for _, sl := range s.snapshot() {
		if it := sl.state().it; it != nil && !s.handoff(sl, true) {
			failed++
		}
	}
	err := s.ml.Leave(timeout)
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
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[name]; c != nil {
		return pb.NewCirculationClient(c), nil
	}
	addr, ok := s.addrs[name]
	if !ok {
		return nil, scone.NewError(scone.CodeUnavailable, "circulate: "+name+" is not a live relay")
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// A relay cut off and back is reached again within 50 ms, not
		// after gRPC's default second of backoff.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: s.cfg.Timeout,
		}),
	}
	if s.cfg.Dial != nil {
		opts = append(opts, grpc.WithContextDialer(s.cfg.Dial))
	}
	c, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, err
	}
	s.conns[name] = c
	return pb.NewCirculationClient(c), nil
}

// delegate gives memberlist the relay's metadata: its Circulation address.
type delegate struct{ s *Store }

func (d delegate) NodeMeta(int) []byte             { return []byte(d.s.cfg.PeerAddr) }
func (d delegate) NotifyMsg([]byte)                {}
func (d delegate) GetBroadcasts(int, int) [][]byte { return nil }
func (d delegate) LocalState(bool) []byte          { return nil }
func (d delegate) MergeRemoteState([]byte, bool)   {}

// events follows membership.
type events struct{ s *Store }

func (e events) NotifyJoin(n *memberlist.Node)   { e.s.memberUp(n.Name, string(n.Meta)) }
func (e events) NotifyUpdate(n *memberlist.Node) { e.s.memberUp(n.Name, string(n.Meta)) }
func (e events) NotifyLeave(n *memberlist.Node)  { e.s.memberGone(n.Name, n.Address()) }

func (s *Store) memberUp(name, addr string) {
	s.mu.Lock()
	if old, ok := s.addrs[name]; ok && old != addr {
		if c := s.conns[name]; c != nil {
			c.Close()
			delete(s.conns, name)
		}
	}
	if old, ok := s.addrs[name]; !ok || old != addr {
		s.joined[name] = s.cfg.Now()
	}
	s.addrs[name] = addr
	s.setMembers()
	s.mu.Unlock()
	s.lost.Found(name)
	s.notifyChange()
}

func (s *Store) memberGone(name, gossipAddr string) {
	if name != s.cfg.Name {
		s.lost.Lost(name, gossipAddr, time.Now()) // the tracker reads time.Now
	}
	s.mu.Lock()
	delete(s.addrs, name)
	delete(s.joined, name)
	for m, at := range s.goneAt {
		if time.Since(at) >= s.cfg.Lease {
			delete(s.goneAt, m) // goneLately no longer needs it
		}
	}
	s.goneAt[name] = time.Now()
	if c := s.conns[name]; c != nil {
		c.Close()
		delete(s.conns, name)
	}
	s.setMembers()
	s.mu.Unlock()
	s.notifyChange()
}

// rejoin tries to join one of the relays this one lost, or its seeds.
func (s *Store) rejoin(addr string) {
	if _, err := s.ml.Join([]string{addr}); err != nil {
		s.m.rejoins.WithLabelValues("failed").Inc()
		s.cfg.Logger.Debug("rejoin failed", "relay", s.cfg.Name, "addr", addr, "err", err)
		return
	}
	s.m.rejoins.WithLabelValues("joined").Inc()
	s.cfg.Logger.Info("rejoined", "relay", s.cfg.Name, "addr", addr)
}

// setMembers records the live members; s.mu must be held.
func (s *Store) setMembers() {
	s.members = s.members[:0:0]
	for name := range s.addrs {
		s.members = append(s.members, name)
	}
	slices.Sort(s.members)
	h := fnv.New64a()
	for _, m := range s.members {
		h.Write([]byte(m))
		h.Write([]byte{0})
	}
	s.view.Store(h.Sum64())
	s.m.members.Set(float64(len(s.members)))
}

// viewHash returns the hash of the live members this relay sees.
func (s *Store) viewHash() uint64 { return s.view.Load() }

// errViewsDiffer is a query another relay refused because it sees other
// live relays than this one.
var errViewsDiffer = errors.New("circulate: the relay sees other live relays than this one")

func (s *Store) notifyChange() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// goneLately reports whether a holder of it listed before this relay left
// the group less than the Lease ago. It may only be cut off from the
// others' gossip, and still serve reads from a copy it committed within its
// lease: the copies are not taken over before that lease has run out.
func (s *Store) goneLately(it *item) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, h := range it.holders {
		if h == s.cfg.Name {
			return false
		}
		if at, ok := s.goneAt[h]; ok && time.Since(at) < s.cfg.Lease {
			return true
		}
	}
	return false
}

// holds reports whether holder h still holds its copy of it, as far as
// this relay can tell: h is live, and has not restarted (joined again at a
// new address) since this relay took its own copy, which was placed on h at
// about the same time.
func (s *Store) holds(h string, it *item) bool {
	if h == s.cfg.Name {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.addrs[h]
	return ok && !s.joined[h].After(it.since)
}
