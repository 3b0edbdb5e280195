package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/circulate"
	"github.com/scone-project/scone/internal/chaosctl"
	"github.com/scone-project/scone/internal/cli"
	"github.com/scone-project/scone/internal/liveview"
	"github.com/scone-project/scone/relay"
)

const relaySummary = `Runs a relay: a gRPC proxy in front of servers that run the SCONE hook. It
takes the SCONEs off every reply, keeps them for the client, and attaches
them to the client's next request, so clients need no SCONE code. With
--transport=http it is an HTTP reverse proxy in front of servers running
sconehttp.Middleware instead: it attaches the SCONEs in the Scone header,
takes them off the responses, and names clients by the same rules (an
--identity-header is an HTTP header then).

A client is named by what it proves: by default the SPIFFE ID (URI SAN) of
its TLS client certificate, verified against --client-ca, which a renewed
certificate keeps (--identity=cert-subject or cert-hash to choose otherwise).
--identity-header NAME names clients by a metadata key instead; it
authenticates nothing, since any caller can send any name and take over that
client's session: use it only behind a proxy that authenticates every caller
and sets the key itself. A relay with neither --client-ca nor
--identity-header could name no client, so it refuses to start. With
--store=jetstream, relays sharing a NATS JetStream bucket form one holder
and any of them can die without losing state. With --circulate
(--store=circulate), relays joined by --seeds hold each client's SCONEs in
memory, --copies of them at a time, pass them on to relays that held none
after --dwell and after each write, and find them by asking each other
(with no more relays than --copies the copies cannot move: the relays warn,
in the log and /healthz); their links are secured with --peer-cert,
--peer-key and --peer-ca (mutual TLS, a CA for the group alone) and
--gossip-key-file (memberlist encryption; SIGHUP reloads it), and on a
--gossip or --peer-listen address other than loopback a relay refuses to
start without them, unless --insecure-peers.

When an upstream fails before answering (connection refused or reset, the
server gone mid-call), the relay re-sends the call with the same SCONEs to
another upstream, up to --retry-attempts in all, for the methods the proto
declares idempotent or free of side effects and those --retry names. Safe
for the state kept in SCONEs (the lost attempt's new SCONEs reached no
holder); effects outside SCONEs, such as an e-mail sent, are the
application's to make idempotent.`

func runRelay(ctx context.Context, args []string, stdout io.Writer) error {
	f := cli.NewFlags("scone", "relay", stdout)
	f.SetSummary(relaySummary + "\n\n" + cli.TracingHelp)
	listen := f.String("listen", "127.0.0.1:7400", "address to serve gRPC (or HTTP, with --transport=http) on")
	transport := f.String("transport", "grpc", "what the relay relays: grpc, or http (a reverse proxy in front of servers running sconehttp.Middleware; --upstream are their HTTP addresses)")
	upstreams := f.String("upstream", "", "comma-separated addresses (host:port) of the servers to relay to; required")
	identity := f.String("identity", "cert-uri", "what of a verified client certificate (--client-ca) names the client: cert-uri (its SPIFFE ID, kept on renewal), cert-subject, or cert-hash (changes on renewal)")
	identityHeader := f.String("identity-header", "", "UNSAFE unless behind an authenticating proxy: name clients by this metadata key (HTTP header, with --transport=http) instead of a certificate; any caller can claim any name")
	storeKind := f.String("store", "memory", "where SCONEs are kept: memory, jetstream or circulate")
	circ := f.Bool("circulate", false, "circulate the SCONEs among the relays (the same as --store=circulate)")
	name := f.String("name", "", "circulate: this relay's name in the group, unique (default: the --peer-listen address)")
	gossip := f.String("gossip", "127.0.0.1:7947", "circulate: memberlist address (UDP and TCP) the relays gossip on")
	peerListen := f.String("peer-listen", "127.0.0.1:7401", "circulate: address of the service the other relays reach this one at")
	seeds := f.String("seeds", "", "circulate: comma-separated gossip addresses of relays to join (none: start a group)")
	copies := f.Int("copies", circulate.DefaultConfig().Copies, "circulate: relays holding each client's SCONEs at any time")
	dwell := f.Duration("dwell", circulate.DefaultConfig().Dwell, "circulate: how long a relay keeps a client's SCONEs before handing them on (a write hands them on at once)")
	queryTimeout := f.Duration("query-timeout", circulate.DefaultConfig().QueryTimeout, "circulate: how long a relay looks for a client's SCONEs on the others before failing the request (Unavailable)")
	maxClients := f.Int("max-clients", relay.DefaultMemoryConfig().MaxClients, "memory store: clients held at most; new ones are refused beyond")
	natsURL := f.String("nats-url", nats.DefaultURL, "jetstream store: NATS server URLs, comma-separated")
	bucket := f.String("bucket", "scone", "jetstream store: key-value bucket shared by the relays")
	replicas := f.Int("replicas", 1, "jetstream store: NATS servers keeping each SCONE (1, 3 or 5)")
	maxSize := f.Int("max-size", scone.DefaultMaxSize, "largest SCONE stored, in bytes")
	maxSkew := f.Duration("max-clock-skew", relay.DefaultMaxClockSkew, "how far this relay's clock may run ahead of the servers' without losing state: SCONEs are kept and attached until their expiry plus this, by this relay's clock (0: none)")
	tlsCert := f.String("tls-cert", "", "serve TLS with this certificate (PEM); with --tls-key")
	tlsKey := f.String("tls-key", "", "private key (PEM) of --tls-cert")
	clientCA := f.String("client-ca", "", "require client certificates signed by these CAs (PEM): they name the clients")
	retry := f.String("retry", "", "comma-separated services (/pkg.Service/) and methods (/pkg.Service/Method) to re-send when an upstream fails before answering, besides those the proto declares idempotent; only for methods whose effects live in SCONEs or are idempotent")
	retryAttempts := f.Int("retry-attempts", relay.DefaultRetryAttempts, "attempts at most of a call re-sent after an upstream failed before answering, the first included (1 to 5; 1: never re-send)")
	retryBackoff := f.Duration("retry-backoff", relay.DefaultRetryBackoff, "longest wait before a call's first re-send; each next one waits up to twice as long")
	admin := f.String("admin", "127.0.0.1:9400", "address of /metrics and /healthz")
	peerFlags := f.PeerFlags("relays")
	logger := f.LogFlags(os.Stderr)
	if err := f.Parse(args); err != nil {
		return err
	}
	log, err := logger()
	if err != nil {
		return err
	}
	_, stopTracing, err := cli.Tracing(ctx, "scone-relay")
	if err != nil {
		return err
	}
	defer stopTracing(context.Background())

	ctl, err := chaosctl.Start(log)
	if err != nil {
		return err
	}
	now := ctl.Now()
	cfg := relay.DefaultConfig()
	cfg.Logger = log
	cfg.Now = now
	cfg.MaxSize = *maxSize
	if *maxSkew < 0 {
		return fmt.Errorf("--max-clock-skew=%v: must not be negative", *maxSkew)
	}
	cfg.MaxClockSkew = *maxSkew
	if *upstreams == "" {
		return errors.New("--upstream is required")
	}
	cfg.Upstreams = strings.Split(*upstreams, ",")
	if *retry != "" {
		cfg.RetryMethods = strings.Split(*retry, ",")
	}
	cfg.RetryAttempts, cfg.RetryBackoff = *retryAttempts, *retryBackoff
	if *circ {
		*storeKind = "circulate"
	}
	if *transport != "grpc" && *transport != "http" {
		return fmt.Errorf("--transport=%q: want grpc or http", *transport)
	}
	if !slices.Contains([]string{"memory", "jetstream", "circulate"}, *storeKind) {
		return fmt.Errorf("--store=%q: want memory, jetstream or circulate", *storeKind)
	}
	if cfg.Identity, err = cli.CertIdentity(*identity); err != nil {
		return err
	}
	if *identityHeader != "" {
		cfg.IdentityHeader = *identityHeader
		log.Warn("clients are named by the " + *identityHeader + " metadata key (HTTP header), which authenticates nothing: any caller that reaches this relay can act as any client; run it only behind a proxy that authenticates callers and sets the key")
	} else if *clientCA == "" {
		return errors.New("no way to name clients: give --client-ca (with --tls-cert and --tls-key) so verified client certificates name them, or, behind an authenticating proxy only, --identity-header NAME")
	}
	if cfg.TLS, err = cli.ServerTLS(*tlsCert, *tlsKey, *clientCA); err != nil {
		return err
	}
	ready := func() error { return nil }
	var circulating *circulate.Store
	switch *storeKind {
	case "memory":
		mc := relay.DefaultMemoryConfig()
		mc.MaxClients, mc.Now, mc.MaxClockSkew = *maxClients, now, *maxSkew
		cfg.Store = relay.NewMemoryStore(mc)
	case "jetstream":
		nc, err := nats.Connect(*natsURL, append(relay.NATSOptions(), nats.Name("scone relay"))...)
		if err != nil {
			return fmt.Errorf("--nats-url=%s: %w", *natsURL, err)
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		jc := relay.DefaultJetStreamConfig()
		jc.Bucket, jc.Replicas, jc.Now, jc.MaxClockSkew = *bucket, *replicas, now, *maxSkew
		octx, cancel := context.WithTimeout(ctx, 10*time.Second)
		store, err := relay.NewJetStreamStore(octx, js, jc)
		cancel()
		if err != nil {
			return fmt.Errorf("--store=jetstream (--bucket=%s, --replicas=%d): %w", *bucket, *replicas, err)
		}
		cfg.Store = store
		ready = func() error {
			if !nc.IsConnected() {
				return errors.New("not connected to NATS")
			}
			return nil
		}
	case "circulate":
		plis, err := net.Listen("tcp", *peerListen)
		if err != nil {
			return fmt.Errorf("--peer-listen=%s: %w", *peerListen, err)
		}
		cc := circulate.DefaultConfig()
		cc.Name, cc.GossipAddr, cc.PeerAddr = *name, *gossip, plis.Addr().String()
		if cc.Name == "" {
			cc.Name = cc.PeerAddr
		}
		if *seeds != "" {
			cc.Seeds = strings.Split(*seeds, ",")
		}
		cc.Copies, cc.Dwell, cc.QueryTimeout, cc.Logger, cc.Now, cc.MaxClockSkew = *copies, *dwell, *queryTimeout, log, now, *maxSkew
		peers, err := peerFlags.Load()
		if err != nil {
			plis.Close()
			return err
		}
		cc.PeerTLS, cc.GossipKeys, cc.InsecurePeers = peers.TLS, peers.GossipKeys, peers.Insecure
		if cc.Memberlist, err = ctl.Memberlist(*gossip); err != nil {
			plis.Close()
			return fmt.Errorf("--gossip=%s: %w", *gossip, err)
		}
		if circulating, err = circulate.New(cc); err != nil {
			plis.Close()
			return fmt.Errorf("--store=circulate: %w", err)
		}
		go circulating.ServePeer(plis)
		cli.ReloadGossipKeysOnHUP(ctx, peers.KeyFile, circulating.SetGossipKeys, log)
		cfg.Store = circulating
		ready = func() error {
			if n := len(circulating.Members()); n < cc.Copies {
				return fmt.Errorf("%d relays in the group, fewer than --copies=%d", n, cc.Copies)
			}
			if err := circulating.Circulating(); err != nil {
				// Serving, but as static replication: say so.
				return cli.Warning{Err: err}
			}
			return nil
		}
	default:
		return fmt.Errorf("--store=%q: want memory, jetstream or circulate", *storeKind)
	}

	var r relayServer
	if *transport == "http" {
		r, err = relay.NewHTTP(cfg)
	} else {
		r, err = relay.New(cfg)
	}
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen=%s: %w", *listen, err)
	}
	start := time.Now()
	view := func() liveview.Snapshot {
		g := liveview.Group{Name: "upstreams"}
		for _, u := range cfg.Upstreams {
			g.Members = append(g.Members, liveview.Member{Name: u, Addr: u, Up: true, Detail: "called round-robin"})
		}
		s := liveview.Snapshot{
			Mode: "relay", Elapsed: time.Since(start).Seconds(), Groups: []liveview.Group{g},
			Where:   "in the relay's " + *storeKind + " store",
			Clients: clientsNamed(*identity, *identityHeader) + "; they hold no SCONEs",
		}
		if m, ok := cfg.Store.(*relay.MemoryStore); ok {
			clients, scones := m.Len()
			s.Where = fmt.Sprintf("in this relay's memory: %d clients, %d SCONEs", clients, scones)
		}
		if circulating != nil {
			g := liveview.Group{Name: "relays"}
			for _, m := range circulating.Members() {
				g.Members = append(g.Members, liveview.Member{Name: m, Up: true})
			}
			s.Groups = append(s.Groups, g)
			s.Where = fmt.Sprintf("circulating among %d relays: this one holds %d copies now", len(g.Members), len(circulating.Copies()))
		}
		return s
	}
	var more []prometheus.Gatherer
	if circulating != nil {
		more = append(more, circulating.Metrics())
	}
	adminAddr, err := cli.ServeAdmin(ctx, *admin, r.Metrics(), ready, view, log, more...)
	if err != nil {
		return fmt.Errorf("--admin=%s: %w", *admin, err)
	}
	log.Info("relay serving", "transport", *transport, "listen", lis.Addr().String(), "upstreams", cfg.Upstreams, "store", *storeKind, "admin", adminAddr.String())
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		<-ctx.Done()
		log.Info("relay draining calls in flight")
		done := make(chan struct{})
		go func() { r.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			r.Stop()
		}
	}()
	err = r.Serve(lis)
	if ctx.Err() != nil {
		<-drained
	}
	if circulating != nil {
		// The copies held here go to the next relays before it leaves.
		if lerr := circulating.Leave(5 * time.Second); lerr != nil {
			log.Warn("leaving the group", "err", lerr)
		}
	}
	return err
}

// relayServer is a relay of either transport: *relay.Server (gRPC) or
// *relay.HTTPServer.
type relayServer interface {
	Serve(net.Listener) error
	Stop()
	GracefulStop()
	Metrics() *prometheus.Registry
}

// clientsNamed says how the relay names its clients, for the debug view.
func clientsNamed(identity, header string) string {
	if header != "" {
		return "clients are named by the " + header + " header (trusted: behind an authenticating proxy)"
	}
	return "clients are named by their verified certificates (" + identity + ")"
}
