package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/scone-project/scone/internal/membership"
	"github.com/scone-project/scone/internal/pki"
)

// peerTLSOf returns the PeerTLS of a member with a certificate of ca (for
// 127.0.0.1) that trusts the members of trusted.
func peerTLSOf(t testing.TB, ca, trusted *pki.CA, name string) *tls.Config {
	t.Helper()
	cert, err := ca.Server(name)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: trusted.Pool()}
}

// newSecureCluster starts n nodes on loopback whose peer links run over
// mutual TLS with ca and whose gossip is encrypted with key.
func newSecureCluster(t testing.TB, n, k int, ca *pki.CA, key []byte) *tcpCluster {
	return startTCPCluster(&tcpCluster{
		tb: t, k: k, sealer: testSealer(t), gossipKeys: [][]byte{key},
		peerTLS: func(name string) *tls.Config { return peerTLSOf(t, ca, ca, name) },
	}, n)
}

// startOutsider starts a node outside c's nodes with its own PeerTLS and
// gossip keys, joining node-0.
func startOutsider(t *testing.T, c *tcpCluster, peerTLS *tls.Config, keys [][]byte) (*Node, error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Name, cfg.GossipAddr, cfg.PeerAddr, cfg.K = "impostor", "127.0.0.1:0", lis.Addr().String(), c.k
	cfg.Seeds, cfg.PeerTLS, cfg.GossipKeys = []string{c.nodes[0].gossip}, peerTLS, keys
	n, err := New(cfg)
	if err != nil {
		lis.Close()
		return nil, err
	}
	t.Cleanup(n.Close)
	go n.ServePeer(lis)
	return n, nil
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("not within 10s: %s", what)
		}
	}
}

func getVia(tn *tcpNode, client string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "scone-client", client)
	out := new(wrapperspb.StringValue)
	err := tn.conn.Invoke(ctx, "/sconetest.Counter/Get", wrapperspb.String(""), out)
	return out.GetValue(), err
}

// TestPeerImpostorForeignCA: a process that has the gossip key (it leaked)
// but a peer certificate of another CA joins the member list, and yet can
// neither read nor write a record: the nodes refuse its batches at the TLS
// handshake, and never hand it a record, since it cannot prove to them it
// is a node either. The nodes with the cluster's CA and key serve as ever.
func TestPeerImpostorForeignCA(t *testing.T) {
	ca, err := pki.NewCA("cluster peers")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := pki.NewCA("impostor")
	if err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{7}, 32)
	c := newSecureCluster(t, 3, 2, ca, key)
	clients := make([]string, 12)
	for i := range clients {
		clients[i] = fmt.Sprint("client-", i)
		if err := setVia(c.nodes[i%3], clients[i], "mine"); err != nil {
			t.Fatalf("a write on the cluster with the right CA and key: %v", err)
		}
		if got, err := getVia(c.nodes[(i+1)%3], clients[i]); err != nil || got != "mine" {
			t.Fatalf("read through another node: %q, %v; want \"mine\"", got, err)
		}
	}

	// Its certificate is of another CA; it trusts the cluster's, so that
	// the refusal is the nodes' own.
	imp, err := startOutsider(t, c, peerTLSOf(t, foreign, ca, "impostor"), [][]byte{key})
	if err != nil {
		t.Fatalf("the impostor with the gossip key did not even join: %v", err)
	}
	ctx := context.Background()
	for _, cl := range clients[:3] {
		k := headerKey(cl)
		if rec, err := fetched(imp.call(ctx, c.nodes[0].name, fetchOp(k), 0)); err == nil {
			t.Fatalf("the impostor read %s's record from %s: %+v", cl, c.nodes[0].name, rec)
		}
		forged := &Record{Key: k, RV: 1 << 40, Stamp: time.Now().UnixNano(), SCONEs: [][]byte{[]byte("forged")}, Copies: 2}
		if _, _, err := imp.storeOn(ctx, c.nodes[0].name, forged, 0, true, 0); err == nil {
			t.Fatalf("%s took the impostor's record for %s", c.nodes[0].name, cl)
		}
		for _, tn := range c.nodes {
			if r := tn.node.store.get(k); r != nil && r.RV == forged.RV {
				t.Fatalf("%s holds the impostor's record for %s", tn.name, cl)
			}
		}
	}

	// Once the nodes count it a member, a write that would give it a copy
	// fails, and it is given none.
	for _, tn := range c.nodes {
		eventually(t, tn.name+" sees the impostor", func() bool { return slices.Contains(tn.node.Members(), "impostor") })
	}
	refused := 0
	for i, cl := range clients {
		if !slices.Contains(Owners(headerKey(cl), c.nodes[0].node.Members(), 2), "impostor") {
			continue
		}
		refused++
		if err := setVia(c.nodes[i%3], cl, "changed"); err == nil {
			t.Errorf("a write of %s, which the impostor would keep a copy of, succeeded", cl)
		}
	}
	if refused == 0 {
		t.Fatal("the impostor owns none of the clients: the test proves nothing")
	}
	if n := imp.Records(); n != 0 {
		t.Fatalf("the impostor holds %d records", n)
	}
}

// TestGossipWrongKeyCannotJoin: a node with the cluster's CA but another
// gossip key, or none, cannot join; the nodes do not see it.
func TestGossipWrongKeyCannotJoin(t *testing.T) {
	ca, err := pki.NewCA("cluster peers")
	if err != nil {
		t.Fatal(err)
	}
	c := newSecureCluster(t, 2, 2, ca, bytes.Repeat([]byte{7}, 32))
	for _, keys := range [][][]byte{{bytes.Repeat([]byte{8}, 32)}, nil} {
		if _, err := startOutsider(t, c, peerTLSOf(t, ca, ca, "impostor"), keys); err == nil {
			t.Errorf("a node with gossip keys %x joined", keys)
		}
	}
	for _, tn := range c.nodes {
		if m := tn.node.Members(); len(m) != 2 {
			t.Errorf("%s sees %v", tn.name, m)
		}
	}
}

// TestInsecurePeersRefusedOffLoopback: a node whose gossip or peer address
// other hosts reach does not start without peer TLS and a gossip key,
// unless InsecurePeers. Only the configuration is checked: nothing binds
// these addresses.
func TestInsecurePeersRefusedOffLoopback(t *testing.T) {
	for _, addrs := range [][2]string{{"10.0.0.1:7946", "127.0.0.1:7601"}, {"127.0.0.1:7946", "192.0.2.1:7601"}, {"0.0.0.0:7946", "127.0.0.1:7601"}} {
		cfg := DefaultConfig()
		cfg.Name, cfg.GossipAddr, cfg.PeerAddr = "n", addrs[0], addrs[1]
		if _, err := New(cfg); !errors.Is(err, membership.ErrInsecurePeers) {
			t.Errorf("New with gossip %s, peer %s: %v, want ErrInsecurePeers", addrs[0], addrs[1], err)
		}
		cfg.PeerTLS, cfg.GossipKeys = &tls.Config{}, [][]byte{bytes.Repeat([]byte{7}, 32)}
		if err := cfg.validate(); err != nil {
			t.Errorf("gossip %s, peer %s, with TLS and a key: %v", addrs[0], addrs[1], err)
		}
		cfg.PeerTLS, cfg.GossipKeys, cfg.InsecurePeers = nil, nil, true
		if err := cfg.validate(); err != nil {
			t.Errorf("gossip %s, peer %s, InsecurePeers: %v", addrs[0], addrs[1], err)
		}
	}
}
