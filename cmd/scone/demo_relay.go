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

	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/relay"
)

// relayTier is the network of --mode=relay: relays in front of the gateway
// replicas, sharing one JetStream bucket on a NATS server embedded in the
// demo.
type relayTier struct {
	dir    string
	ns     *server.Server
	nc     *nats.Conn
	kv     jetstream.KeyValue
	relays []*relayReplica
}

// relayReplica is one relay process (here, one relay server) that can be
// killed and restarted on its address.
type relayReplica struct {
	name, addr string
	cfg        relay.Config

	mu  sync.Mutex
	srv *relay.Server
}

func startRelayTier(n int, upstreams []string) (_ *relayTier, err error) {
	t := &relayTier{}
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
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		cfg := relay.DefaultConfig()
		cfg.Upstreams, cfg.Store = upstreams, store
		r := &relayReplica{name: fmt.Sprintf("relay-%d", i+1), addr: lis.Addr().String(), cfg: cfg}
		if err := r.serve(lis); err != nil {
			lis.Close()
			return nil, err
		}
		t.relays = append(t.relays, r)
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

// held reports how many sessions the bucket holds SCONEs of, and its size.
func (t *relayTier) held(ctx context.Context) (sessions uint64, bytes uint64) {
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
	srv, err := relay.New(r.cfg)
	if err != nil {
		return err
	}
	r.srv = srv
	go srv.Serve(lis)
	return nil
}

func (r *relayReplica) up() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv != nil
}

func (r *relayReplica) kill() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.Stop()
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
