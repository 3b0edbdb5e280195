package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/chaosctl"
	"github.com/scone-project/scone/internal/cli"
	"github.com/scone-project/scone/marks"
)

// runChaosChild runs one process that "sconelab chaos" starts besides the
// daemons: "server" (one bookstore tier, with a short TTL and the chaos
// clock) or "nats" (one NATS server of a JetStream cluster). These are
// not part of the command's documented interface.
func runChaosChild(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return errors.New("chaos child: want server or nats")
	}
	if !chaosctl.Enabled {
		return errors.New("chaos child: this sconelab was built without -tags sconechaos (sconelab chaos builds its own)")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	switch args[0] {
	case "server":
		return runChaosServer(ctx, args[1:], log)
	case "nats":
		return runChaosNATS(ctx, args[1:], log)
	}
	return fmt.Errorf("chaos child %q: want server or nats", args[0])
}

func childFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("sconelab chaos child "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// runChaosServer serves one tier of the bookstore, as the example's
// servers do, with a Sealer whose clock is skewable (internal/chaosctl).
func runChaosServer(ctx context.Context, args []string, log *slog.Logger) error {
	fs := childFlags("server")
	role := fs.String("role", "", "gateway, cart or inventory")
	listen := fs.String("listen", "127.0.0.1:0", "gRPC address")
	keys := fs.String("keys", "", "key file")
	cart := fs.String("cart", "", "cart addresses")
	inventory := fs.String("inventory", "", "inventory addresses")
	ttl := fs.Duration("ttl", time.Minute, "lifetime of the SCONEs sealed")
	natsURL := fs.String("nats", "", "NATS URL of the JetStream mark store the replicas share (none: no marks)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctl, err := chaosctl.Start(log)
	if err != nil {
		return err
	}
	now := ctl.Now()
	ring, err := scone.ReadKeyFile(*keys)
	if err != nil {
		return err
	}
	cli.ReloadKeysOnHUP(ctx, *keys, ring, log) // sconelab chaos rotates the keys
	sopts := []scone.Option{scone.WithTTL(*ttl), scone.WithClock(now)}
	if *natsURL != "" {
		nc, err := nats.Connect(*natsURL, nats.MaxReconnects(-1))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		store, err := marks.NewJetStream(ctx, js, marks.DefaultConfig())
		if err != nil {
			return err
		}
		sopts = append(sopts, scone.WithMarkStore(store))
	}
	sealer, err := scone.NewSealer(ring, sopts...)
	if err != nil {
		return err
	}
	var b shop.Backends
	if *cart != "" {
		conn, err := shop.DialBackend(splitList(*cart))
		if err != nil {
			return err
		}
		defer conn.Close()
		b.Cart = pb.NewCartClient(conn)
	}
	if *inventory != "" {
		conn, err := shop.DialBackend(splitList(*inventory))
		if err != nil {
			return err
		}
		defer conn.Close()
		b.Inventory = pb.NewInventoryClient(conn)
	}
	var opts []grpc.ServerOption
	if brokenReseal && shop.Role(*role) == shop.RoleCart {
		log.Warn("chaos: BROKEN BUILD: every tenth cart update is not sealed")
		opts = append(opts, grpc.ChainUnaryInterceptor(skipEveryTenthReseal()))
	}
	srv, err := shop.NewServer(shop.Role(*role), sealer, b, opts...)
	if err != nil {
		return err
	}
	lis, err := cli.ListenRetry(*listen)
	if err != nil {
		return err
	}
	log.Info("chaos server serving", "role", *role, "listen", lis.Addr().String())
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	return srv.Serve(lis)
}

// brokenReseal is set only by the chaosbroken build tag (chaos_broken.go),
// which only the chaos test's deliberately broken build uses.
var brokenReseal = false

// skipEveryTenthReseal keeps the state a cart update started from on every
// tenth update while the reply shows the update: a lost update, which the
// checker must catch.
func skipEveryTenthReseal() grpc.UnaryServerInterceptor {
	var n atomic.Int64
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		st, ok := scone.FromContext(ctx)
		if !ok || !strings.HasSuffix(info.FullMethod, "/Add") && !strings.HasSuffix(info.FullMethod, "/Remove") || n.Add(1)%10 != 0 {
			return h(ctx, req)
		}
		before := append([]byte(nil), st.Data()...)
		resp, err := h(ctx, req)
		st.SetData(before)
		return resp, err
	}
}

// runChaosNATS runs one NATS server of a JetStream cluster. It advertises
// neither its client nor its route addresses, so clients and routes go
// only where they are told (through the chaos fault proxies).
func runChaosNATS(ctx context.Context, args []string, log *slog.Logger) error {
	fs := childFlags("nats")
	name := fs.String("name", "", "server name")
	listen := fs.String("listen", "", "client address host:port")
	cluster := fs.String("cluster", "", "route address host:port")
	routes := fs.String("routes", "", "route URLs of the other servers, comma-separated")
	dir := fs.String("dir", "", "JetStream store directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	host, port, err := splitHostPort(*listen)
	if err != nil {
		return err
	}
	opts := &server.Options{
		ServerName: *name, Host: host, Port: port, JetStream: true, StoreDir: *dir, NoSigs: true,
	}
	if *cluster != "" { // else a server on its own
		chost, cport, err := splitHostPort(*cluster)
		if err != nil {
			return err
		}
		opts.Cluster = server.ClusterOpts{Name: "scone-chaos", Host: chost, Port: cport, NoAdvertise: true}
		opts.Routes = server.RoutesFromStr(*routes)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	ns.ConfigureLogger()
	go ns.Start()
	if !ns.ReadyForConnections(20 * time.Second) {
		return errors.New("NATS server not ready in 20 s")
	}
	log.Info("chaos NATS serving", "name", *name, "listen", *listen, "cluster", *cluster)
	<-ctx.Done()
	ns.Shutdown()
	ns.WaitForShutdown()
	return nil
}

func splitHostPort(addr string) (string, int, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", 0, fmt.Errorf("%q: want host:port", addr)
	}
	var port int
	if _, err := fmt.Sscanf(addr[i+1:], "%d", &port); err != nil {
		return "", 0, fmt.Errorf("%q: %v", addr, err)
	}
	return addr[:i], port, nil
}
