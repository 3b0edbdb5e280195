package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/examples/bookstore/clusternode"
	"github.com/scone-project/scone/internal/chaosctl"
	"github.com/scone-project/scone/internal/cli"
	"github.com/scone-project/scone/internal/liveview"
)

const nodeSummary = `Runs one node of a bookstore cluster (cluster mode): the nodes, not the
clients, keep the clients' SCONEs. A node joins the others through gossip
(hashicorp/memberlist; --join), serves the bookstore gateway to clients on
--listen, and keeps each client's state on --k nodes, written to all of them
before the reply leaves; any k-1 nodes can die at once with nothing
acknowledged lost. Clients need no SCONE code.

A client is named by what it proves: by default the SPIFFE ID (URI SAN) of
its TLS client certificate, verified against --client-ca, which a renewed
certificate keeps (--identity=cert-subject or cert-hash to choose otherwise).
--identity-header NAME names clients by a metadata key instead; it
authenticates nothing, since any caller can send any name and take over that
client's state: use it only behind a proxy that authenticates every caller
and sets the key itself. A node with neither could name no client, so it
refuses to start.

The nodes' own links are secured with --peer-cert, --peer-key and --peer-ca
(mutual TLS, a CA for the cluster alone) and --gossip-key-file (memberlist
encryption); on a --gossip or --peer-listen address other than loopback a
node refuses to start without them, unless --insecure-peers.

Every node needs the same key file (scone keygen) and gossip key file;
SIGHUP reloads both (scone keys rotates the first; docs/security.md says how
to rotate the second). See docs/modes.md, docs/operations.md and README.md
beside this example.`

// runNode runs "bookstore node": one node of a cluster, until ctx is done.
func runNode(ctx context.Context, args []string, stdout io.Writer) error {
	f := cli.NewFlags("bookstore", "node", stdout)
	f.SetSummary(nodeSummary + "\n\n" + cli.TracingHelp)
	host, _ := os.Hostname()
	name := f.String("name", host, "the node's name, unique in the cluster")
	listen := f.String("listen", "127.0.0.1:7600", "address to serve the gateway (gRPC) to clients on")
	httpListen := f.String("http", "", "also serve the gateway's HTTP/JSON front (/shop/) on this address, its state kept in the cluster as over gRPC (empty: none)")
	peerListen := f.String("peer-listen", "127.0.0.1:7601", "address to serve the other nodes on (reads and writes of records)")
	peerAdvertise := f.String("peer-advertise", "", "address the other nodes reach --peer-listen at, when it differs (a NAT, a proxy); empty: the address listened on")
	gossip := f.String("gossip", "127.0.0.1:7946", "address (UDP and TCP) of gossip with the other nodes")
	join := f.String("join", "", "gossip addresses of nodes to join, comma-separated; empty starts a new cluster")
	k := f.Int("k", 2, "nodes that keep each client's state (copies written before each reply)")
	degrade := f.Bool("degrade", false, "when fewer than k nodes can take a write, accept it on fewer, saying so in the reply's scone-copies header (default: the call fails with Unavailable)")
	keys := f.String("keys", "", "key file shared by every node (scone keygen); required")
	identity := f.String("identity", "cert-uri", "what of a verified client certificate (--client-ca) names the client: cert-uri (its SPIFFE ID, kept on renewal), cert-subject, or cert-hash (changes on renewal)")
	identityHeader := f.String("identity-header", "", "UNSAFE unless behind an authenticating proxy: name clients by this metadata key instead of a certificate; any caller can claim any name")
	tlsCert := f.String("tls-cert", "", "serve clients TLS with this certificate (PEM); with --tls-key")
	tlsKey := f.String("tls-key", "", "private key (PEM) of --tls-cert")
	clientCA := f.String("client-ca", "", "require client certificates signed by these CAs (PEM): they name the clients")
	admin := f.String("admin", "127.0.0.1:9600", "address of /metrics and /healthz")
	peerFlags := f.PeerFlags("nodes")
	logger := f.LogFlags(os.Stderr)
	if err := f.Parse(args); err != nil {
		return err
	}
	log, err := logger()
	if err != nil {
		return err
	}
	switch {
	case *name == "":
		return errors.New("--name is required (no host name to default to)")
	case *keys == "":
		return errors.New("--keys is required: every node needs the same key file (scone keygen --out keys.json)")
	case *k < 1:
		return fmt.Errorf("--k=%d: need at least 1", *k)
	}
	ring, err := scone.ReadKeyFile(*keys)
	if err != nil {
		return fmt.Errorf("--keys=%s: %w", *keys, cli.WithCause(err))
	}
	ctl, err := chaosctl.Start(log)
	if err != nil {
		return err
	}
	now := ctl.Now()
	sealer, err := scone.NewSealer(ring, scone.WithClock(now))
	if err != nil {
		return err
	}
	tlsConf, err := cli.ServerTLS(*tlsCert, *tlsKey, *clientCA)
	if err != nil {
		return err
	}
	peers, err := peerFlags.Load()
	if err != nil {
		return err
	}
	cfg := clusternode.Config{
		Name: *name, Listen: *listen, HTTPListen: *httpListen, PeerListen: *peerListen, PeerAdvertise: *peerAdvertise, Gossip: *gossip,
		K: *k, Degrade: *degrade, Sealer: sealer, TLS: tlsConf, Logger: log, Now: now,
		PeerTLS: peers.TLS, GossipKeys: peers.GossipKeys, InsecurePeers: peers.Insecure,
	}
	if cfg.Identity, err = cli.CertIdentity(*identity); err != nil {
		return err
	}
	if *identityHeader != "" {
		cfg.IdentityHeader = *identityHeader
		log.Warn("clients are named by the " + *identityHeader + " metadata key, which authenticates nothing: any caller that reaches this node can act as any client; run it only behind a proxy that authenticates callers and sets the key")
	} else if *clientCA == "" {
		return errors.New("no way to name clients: give --client-ca (with --tls-cert and --tls-key) so verified client certificates name them, or, behind an authenticating proxy only, --identity-header NAME")
	}
	if *join != "" {
		cfg.Seeds = strings.Split(*join, ",")
	}
	if cfg.Memberlist, err = ctl.Memberlist(*gossip); err != nil {
		return fmt.Errorf("--gossip=%s: %w", *gossip, err)
	}
	tp, stopTracing, err := cli.Tracing(ctx, "bookstore-node")
	if err != nil {
		return err
	}
	defer stopTracing(context.Background())
	cfg.TracerProvider = tp
	n, err := clusternode.Start(cfg)
	if err != nil {
		return err
	}
	cli.ReloadKeysOnHUP(ctx, *keys, ring, log)
	cli.ReloadGossipKeysOnHUP(ctx, peers.KeyFile, n.Cluster().SetGossipKeys, log)
	ready := func() error {
		if got := len(n.Cluster().Members()); got < *k {
			return fmt.Errorf("%d live members, fewer than k=%d", got, *k)
		}
		return nil
	}
	adminAddr, err := cli.ServeAdmin(ctx, *admin, n.Cluster().Metrics(), ready, nodeView(n, *k, clientsNamed(*identity, *identityHeader)), log)
	if err != nil {
		n.Stop()
		return fmt.Errorf("--admin=%s: %w", *admin, err)
	}
	log.Info("node serving", "name", *name, "listen", n.Addr(), "peer", n.PeerAddr(),
		"gossip", n.Cluster().GossipAddr(), "k", *k, "members", len(n.Cluster().Members()), "admin", adminAddr.String(), "http", n.HTTPAddr())
	<-ctx.Done()
	log.Info("node leaving: finishing calls in flight, handing records over")
	return n.Leave()
}

// nodeView is what a node's /debug/scone/ shows: the members as this node
// sees them, and the client records it holds, with their owners.
func nodeView(n *clusternode.Node, k int, clients string) func() liveview.Snapshot {
	start := time.Now()
	return func() liveview.Snapshot {
		self := n.Cluster().Name()
		g := liveview.Group{Name: "cluster"}
		for _, m := range n.Cluster().Members() {
			um := liveview.Member{Name: m, Up: true}
			if m == self {
				um.Addr = n.Addr()
				um.Detail = fmt.Sprintf("this node: %d records, %d calls served", n.Cluster().Records(), n.Served())
			}
			g.Members = append(g.Members, um)
		}
		s := liveview.Snapshot{
			Mode: "cluster node " + self, Where: fmt.Sprintf("on k=%d of the nodes", k),
			Elapsed: time.Since(start).Seconds(), Calls: n.Served(), Groups: []liveview.Group{g},
			Clients: clients + "; records are listed by a hash of the name",
		}
		for _, r := range n.Cluster().Held(liveview.MaxSessions) {
			us := liveview.Session{ID: r.Key[:12], Holders: r.Owners, Bytes: r.Bytes, Calls: int64(r.RV)}
			for _, h := range r.SCONEs {
				us.SCONEs = append(us.SCONEs, liveview.SCONE{Service: h.Service[strings.LastIndexByte(h.Service, '.')+1:], Version: h.Version})
			}
			s.Sessions = append(s.Sessions, us)
		}
		return s
	}
}

// clientsNamed says how the node names its clients, for the live view.
func clientsNamed(identity, header string) string {
	if header != "" {
		return "clients are named by the " + header + " header (trusted: behind an authenticating proxy)"
	}
	return "clients are named by their verified certificates (" + identity + ")"
}
