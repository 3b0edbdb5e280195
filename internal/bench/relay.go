package bench

import (
	"context"
	"errors"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone/relay"
)

// identityKey is the metadata key naming the client to relays and cluster
// nodes (their default).
const identityKey = "scone-client"

func identitySession(ctx context.Context, id string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, identityKey, id)
}

func startRelayMemory(context.Context) (*running, error) {
	return startRelay(&running{}, relay.NewMemoryStore(relay.DefaultMemoryConfig()))
}

// startRelayJetStream keeps the SCONEs in a JetStream bucket on a NATS
// server embedded in this process, every write synced to disk.
func startRelayJetStream(ctx context.Context) (*running, error) {
	r := &running{}
	dir, err := os.MkdirTemp("", "scone-bench-nats-")
	if err != nil {
		return nil, err
	}
	r.onClose(func() { os.RemoveAll(dir) })
	ns, err := server.NewServer(&server.Options{
		ServerName: "bench", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: dir, SyncAlways: true, NoLog: true, NoSigs: true,
	})
	if err != nil {
		return fail(r, err)
	}
	go ns.Start()
	r.onClose(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	if !ns.ReadyForConnections(10 * time.Second) {
		return fail(r, errors.New("the embedded NATS server did not start"))
	}
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		return fail(r, err)
	}
	r.onClose(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		return fail(r, err)
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	store, err := relay.NewJetStreamStore(sctx, js, relay.DefaultJetStreamConfig())
	if err != nil {
		return fail(r, err)
	}
	return startRelay(r, store)
}

// startRelay serves the Sessions service with the SCONE hook (and gRPC
// reflection, from which the relay learns that Step is unary) behind a
// relay keeping the SCONEs in store; callers have no SCONE code and name
// themselves in the identity header.
func startRelay(r *running, store relay.Store) (*running, error) {
	r.session = identitySession
	upstream, err := startSconeServer(r, true)
	if err != nil {
		return fail(r, err)
	}
	if err := serveRelay(r, upstream, store); err != nil {
		return fail(r, err)
	}
	return r, nil
}

// serveRelay serves a relay in front of upstream keeping the SCONEs in
// store, and dials it for the callers.
func serveRelay(r *running, upstream string, store relay.Store) error {
	cfg := relay.DefaultConfig()
	cfg.Upstreams, cfg.Store, cfg.IdentityHeader = []string{upstream}, store, identityKey
	rs, err := relay.New(cfg)
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go rs.Serve(lis)
	r.onClose(rs.Stop)
	return dial(r, lis.Addr().String())
}
