package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scone-project/scone/circulate"
	"github.com/scone-project/scone/cluster"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/relay"
)

// relayTier is the network of --mode=relay and --mode=circulate: relays in
// front of the gateway replicas, sharing one JetStream bucket on a NATS
// server embedded in the demo, or circulating the SCONEs among themselves.
type relayTier struct {
	dir    string
	ns     *server.Server
	nc     *nats.Conn
	kv     jetstream.KeyValue
	relays []*relayReplica
	copies int          // circulate: copies of each session's SCONEs; 0 for JetStream
	http   bool         // the relays are HTTP relays (relay.NewHTTP), before HTTP fronts
	peers  *peerSecrets // circulate: the relays' peer certificates and gossip key

	mu     sync.Mutex
	gossip map[string]string // circulate: relay up → its gossip address
}

// relayReplica is one relay process (here, one relay server) that can be
// killed and restarted on its address.
type relayReplica struct {
	name, addr string
	cfg        relay.Config
	tier       *relayTier

	mu    sync.Mutex
	srv   relayServer
	store *circulate.Store // circulate: made anew at each start
}

// relayServer is a relay of either transport: *relay.Server (gRPC) or
// *relay.HTTPServer.
type relayServer interface {
	Serve(net.Listener) error
	Stop()
}

// startCirculateTier starts n relays that circulate the SCONEs among
// themselves, copies copies of each session's.
func startCirculateTier(n, copies int, upstreams []string, overHTTP bool) (_ *relayTier, err error) {
	t := &relayTier{copies: copies, http: overHTTP, gossip: map[string]string{}}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	if t.peers, err = newPeerSecrets(); err != nil {
		return nil, err
	}
	for i := range n {
		if err := t.addRelay(i, upstreams, nil); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// addRelay starts the tier's i-th relay, with store (nil: its own
// circulating one).
func (t *relayTier) addRelay(i int, upstreams []string, store relay.Store) error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	cfg := relay.DefaultConfig()
	cfg.Upstreams, cfg.Store = upstreams, store
	// The demo's shoppers name themselves in a header on 127.0.0.1, as
	// behind an authenticating proxy; see scone relay --identity-header.
	cfg.IdentityHeader = "scone-client"
	r := &relayReplica{name: fmt.Sprintf("relay-%d", i+1), addr: lis.Addr().String(), cfg: cfg, tier: t}
	if err := r.serve(lis); err != nil {
		lis.Close()
		return err
	}
	t.relays = append(t.relays, r)
	return nil
}

// stores returns the circulating stores of the relays up.
func (t *relayTier) stores() []*circulate.Store {
	var out []*circulate.Store
	for _, r := range t.relays {
		r.mu.Lock()
		if r.store != nil {
			out = append(out, r.store)
		}
		r.mu.Unlock()
	}
	return out
}

// settled reports whether the relays up all see each other and every
// session has its copies (always true without circulation): the nemesis
// kills one relay at a time, once the last loss is repaired.
func (t *relayTier) settled() bool {
	if t.copies == 0 {
		return true
	}
	stores := t.stores()
	counts := map[string]int{}
	for _, s := range stores {
		if len(s.Members()) != len(stores) {
			return false
		}
		for k := range s.Copies() {
			counts[k]++
		}
	}
	// More copies than that is a hand-off under way (the new holders took
	// a copy, the old ones not yet let go of theirs), which copies now
	// make after every write: a session with at least its copies survives
	// the loss of one relay, so the nemesis may kill then.
	for _, n := range counts {
		if n < min(t.copies, len(stores)) {
			return false
		}
	}
	return true
}

// holders returns the relays holding a copy of the session of client.
func (t *relayTier) holders(client string) []string {
	key := cluster.KeyOf("header:" + client) // named by the scone-client header
	var out []string
	for _, r := range t.relays {
		r.mu.Lock()
		if r.store != nil {
			if _, ok := r.store.Copies()[key]; ok {
				out = append(out, r.name)
			}
		}
		r.mu.Unlock()
	}
	return out
}

func startRelayTier(n int, upstreams []string, overHTTP bool) (_ *relayTier, err error) {
	t := &relayTier{http: overHTTP}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	if t.dir, err = os.MkdirTemp("", "scone-demo-nats-"); err != nil {
		return nil, err
	}
	t.ns, err = server.NewServer(&server.Options{
		ServerName: "demo", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: t.dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		return nil, err
	}
	go t.ns.Start()
	if !t.ns.ReadyForConnections(10 * time.Second) {
		return nil, errors.New("the embedded NATS server did not start")
	}
	if t.nc, err = nats.Connect(t.ns.ClientURL()); err != nil {
		return nil, err
	}
	js, err := jetstream.New(t.nc)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	store, err := relay.NewJetStreamStore(ctx, js, relay.DefaultJetStreamConfig())
	if err != nil {
		return nil, err
	}
	if t.kv, err = js.KeyValue(ctx, relay.DefaultJetStreamConfig().Bucket); err != nil {
		return nil, err
	}
	for i := range n {
		if err := t.addRelay(i, upstreams, store); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *relayTier) addrs() []string {
	var out []string
	for _, r := range t.relays {
		out = append(out, r.addr)
	}
	return out
}

// held reports how many sessions the bucket holds SCONEs of, and its size;
// when circulating, how many sessions and copies are in circulation.
func (t *relayTier) held(ctx context.Context) (sessions uint64, bytesOrCopies uint64) {
	if t.copies > 0 {
		keys := map[string]bool{}
		for _, s := range t.stores() {
			for k := range s.Copies() {
				keys[k] = true
				bytesOrCopies++
			}
		}
		return uint64(len(keys)), bytesOrCopies
	}
	st, err := t.kv.Status(ctx)
	if err != nil {
		return 0, 0
	}
	return st.Values(), st.Bytes()
}

func (t *relayTier) close() {
	for _, r := range t.relays {
		r.kill()
	}
	if t.nc != nil {
		t.nc.Close()
	}
	if t.ns != nil {
		t.ns.Shutdown()
		t.ns.WaitForShutdown()
	}
	if t.dir != "" {
		os.RemoveAll(t.dir)
	}
}

func (r *relayReplica) serve(lis net.Listener) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.serveLocked(lis)
}

func (r *relayReplica) serveLocked(lis net.Listener) error {
	cfg := r.cfg
	if r.tier.copies > 0 {
		st, err := r.startStore()
		if err != nil {
			return err
		}
		r.store, cfg.Store = st, st
	}
	var srv relayServer
	var err error
	if r.tier.http {
		srv, err = relay.NewHTTP(cfg)
	} else {
		srv, err = relay.New(cfg)
	}
	if err != nil {
		if r.store != nil {
			r.store.Close()
			r.store = nil
		}
		return err
	}
	r.srv = srv
	go srv.Serve(lis)
	return nil
}

// startStore starts the relay's circulating store, joining the relays up.
func (r *relayReplica) startStore() (*circulate.Store, error) {
	peer, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	cfg := circulate.DefaultConfig()
	cfg.Name, cfg.GossipAddr, cfg.PeerAddr = r.name, "127.0.0.1:0", peer.Addr().String()
	cfg.Copies = r.tier.copies
	t := r.tier
	// The relays talk to each other as in production: mutual TLS and
	// encrypted gossip.
	if cfg.PeerTLS, err = t.peers.tls(r.name); err != nil {
		peer.Close()
		return nil, err
	}
	cfg.GossipKeys = t.peers.gossipKeys()
	t.mu.Lock()
	for name, addr := range t.gossip {
		if name != r.name {
			cfg.Seeds = append(cfg.Seeds, addr)
		}
	}
	t.mu.Unlock()
	st, err := circulate.New(cfg)
	if err != nil {
		peer.Close()
		return nil, err
	}
	go st.ServePeer(peer)
	t.mu.Lock()
	t.gossip[r.name] = st.GossipAddr()
	t.mu.Unlock()
	return st, nil
}

func (r *relayReplica) up() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv != nil
}

func (r *relayReplica) kill() {
	r.mu.Lock()
	srv, st := r.srv, r.store
	r.srv, r.store = nil, nil
	r.mu.Unlock()
	if srv != nil {
		srv.Stop()
	}
	if st != nil {
		r.tier.mu.Lock()
		delete(r.tier.gossip, r.name)
		r.tier.mu.Unlock()
		st.Close() // as a crash: its copies are gone
	}
}

func (r *relayReplica) restart() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		return shop.ErrUp
	}
	lis, err := net.Listen("tcp", r.addr)
	if err != nil {
		return err
	}
	return r.serveLocked(lis)
}
