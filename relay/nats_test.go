package relay_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/scone-project/scone/internal/daemontest"
	"github.com/scone-project/scone/relay"
)

// startNATS runs one NATS server with JetStream in this process, on a
// loopback port, storing in a temporary directory, syncing every write to
// disk before it acknowledges it.
func startNATS(t testing.TB) *server.Server {
	t.Helper()
	return startNATSSync(t, true)
}

// startNATSSync is startNATS; syncAlways false leaves NATS at its default
// (sync_interval 2 minutes): a write is acknowledged once in the page cache.
func startNATSSync(t testing.TB, syncAlways bool) *server.Server {
	t.Helper()
	opts := &server.Options{
		ServerName: "n1", Host: "127.0.0.1", Port: -1,
		JetStream: true, StoreDir: t.TempDir(), SyncAlways: syncAlways,
		NoLog: true, NoSigs: true,
	}
	return runNATS(t, opts)
}

func runNATS(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatalf("NATS server %s did not start", opts.ServerName)
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return ns
}

// startNATSCluster runs n NATS servers with JetStream clustered on loopback.
func startNATSCluster(t testing.TB, n int) []*server.Server {
	t.Helper()
	// Route ports below the ephemeral range (see internal/freeport): a port
	// the kernel gave and took back could be a connection's by the time
	// the server binds it.
	ports := make([]int, n)
	var routes []*url.URL
	for i := range ports {
		addr := daemontest.Addr(t)
		_, port, _ := net.SplitHostPort(addr)
		ports[i], _ = strconv.Atoi(port)
		routes = append(routes, &url.URL{Scheme: "nats", Host: addr})
	}
	var servers []*server.Server
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), SyncAlways: true,
			NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "scone", Host: "127.0.0.1", Port: ports[i]},
			Routes:  routes,
		}
		ns, err := server.NewServer(opts)
		if err != nil {
			t.Fatal(err)
		}
		go ns.Start()
		servers = append(servers, ns)
		t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	}
	for _, ns := range servers {
		if !ns.ReadyForConnections(10 * time.Second) {
			t.Fatal("a NATS server did not start")
		}
	}
	return servers
}

// connect connects to the given NATS servers (any of them), reconnecting
// when one goes away.
func connect(t testing.TB, servers ...*server.Server) jetstream.JetStream {
	t.Helper()
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	nc, err := nats.Connect(strings.Join(urls, ","), relay.NATSOptions()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// jetStreamStore opens the bucket, retrying while a new cluster elects its
// JetStream leader.
func jetStreamStore(t testing.TB, js jetstream.JetStream, replicas int) *relay.JetStreamStore {
	t.Helper()
	cfg := relay.DefaultJetStreamConfig()
	cfg.Replicas = replicas
	// A cluster of NATS processes elects its JetStream meta leader before
	// a bucket can be made: seconds, more on a loaded machine. Waiting for
	// that is a precondition of the tests, not what they measure.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := relay.NewJetStreamStore(ctx, js, cfg)
		cancel()
		if err == nil {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
