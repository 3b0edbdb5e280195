package circulate_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/scone-project/scone/circulate"
	pb "github.com/scone-project/scone/circulate/circulatepb"
	"github.com/scone-project/scone/cluster"
	"github.com/scone-project/scone/internal/membership"
	"github.com/scone-project/scone/internal/pki"
)

// peerTLSOf returns the PeerTLS of a relay with a certificate of ca (for
// 127.0.0.1) that trusts the relays of trusted.
func peerTLSOf(t testing.TB, ca, trusted *pki.CA, name string) *tls.Config {
	t.Helper()
	cert, err := ca.Server(name)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: trusted.Pool()}
}

// secure returns the tuning of a group whose Circulation links run over
// mutual TLS with ca and whose gossip is encrypted with key.
func secure(t testing.TB, ca *pki.CA, key []byte) func(*circulate.Config) {
	return func(cfg *circulate.Config) {
		cfg.PeerTLS, cfg.GossipKeys = peerTLSOf(t, ca, ca, cfg.Name), [][]byte{key}
	}
}

// startOutsider starts a circulating store outside g with its own PeerTLS
// and gossip keys, joining g's first relay.
func startOutsider(t *testing.T, g *group, peerTLS *tls.Config, keys [][]byte) (*circulate.Store, error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := circulate.DefaultConfig()
	cfg.Name, cfg.GossipAddr, cfg.PeerAddr = "impostor", "127.0.0.1:0", lis.Addr().String()
	cfg.Seeds, cfg.PeerTLS, cfg.GossipKeys = []string{g.live()[0].store.GossipAddr()}, peerTLS, keys
	cfg.Dwell = 100 * time.Millisecond
	st, err := circulate.New(cfg)
	if err != nil {
		lis.Close()
		return nil, err
	}
	t.Cleanup(func() { st.Close() })
	go st.ServePeer(lis)
	return st, nil
}

// TestPeerImpostorForeignCA: a process that has the gossip key (it leaked)
// but a peer certificate of another CA joins the member list, and yet can
// neither read nor write a client's copy: the relays refuse its queries
// and puts at the TLS handshake, and never hand it a copy. The relays with
// the group's CA and key serve as ever.
func TestPeerImpostorForeignCA(t *testing.T) {
	ca, err := pki.NewCA("relay peers")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := pki.NewCA("impostor")
	if err != nil {
		t.Fatal(err)
	}
	key := bytes.Repeat([]byte{7}, 32)
	g := newGroup(t, 3, newSealer(t), secure(t, ca, key))
	shoppers := []*shopper{newShopper("alice"), newShopper("bob"), newShopper("carol")}
	for i := range 3 {
		for j, s := range shoppers {
			s.addUntil(t, g, i+j)
		}
	}
	wantCopies(g, len(shoppers), 2)

	// Its certificate is of another CA; it trusts the group's, so that
	// the refusal is the relays' own.
	conn, err := grpc.NewClient(g.live()[0].peer, grpc.WithTransportCredentials(credentials.NewTLS(peerTLSOf(t, foreign, ca, "impostor"))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer := pb.NewCirculationClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	alice := cluster.KeyOf("header:alice")
	if r, err := peer.Query(ctx, &pb.QueryRequest{Key: alice}); err == nil {
		t.Fatalf("the impostor's query was answered: %v", r)
	}
	forged := &pb.Copy{Key: alice, Gen: 1 << 40, Holders: []string{"impostor"}, Scones: [][]byte{[]byte("forged")}}
	if _, err := peer.Put(ctx, &pb.PutRequest{Mode: pb.PutRequest_HANDOFF, Copy: forged}); err == nil {
		t.Fatal("the impostor's put was taken")
	}

	imp, err := startOutsider(t, g, peerTLSOf(t, foreign, ca, "impostor"), [][]byte{key})
	if err != nil {
		t.Fatalf("the impostor with the gossip key did not even join: %v", err)
	}
	g.waitMembers(4)
	// The relays go on handing copies on (every Dwell), some to the
	// impostor's hop: each such hand-off fails, and it gets no copy.
	g.eventually(10*time.Second, func() error {
		for i, s := range shoppers {
			s.add(t, g.live()[i%3]) // may fail: the impostor holds up every query
		}
		for _, m := range g.live() {
			if counter(t, m.store, "scone_circulate_handoffs_total", "outcome", "failed") > 0 {
				return nil
			}
		}
		return errors.New("no hand-off to the impostor was tried")
	})
	if c := imp.Copies(); len(c) != 0 {
		t.Fatalf("the impostor holds copies: %v", c)
	}
	for _, m := range g.live() {
		for key, gv := range m.store.Copies() {
			if gv[0] == forged.Gen {
				t.Fatalf("%s holds the impostor's copy of %s", m.name, key)
			}
		}
	}
}

// TestGossipWrongKeyCannotJoin: a relay with the group's CA but another
// gossip key, or none, cannot join; the relays do not see it.
func TestGossipWrongKeyCannotJoin(t *testing.T) {
	ca, err := pki.NewCA("relay peers")
	if err != nil {
		t.Fatal(err)
	}
	g := newGroup(t, 2, newSealer(t), secure(t, ca, bytes.Repeat([]byte{7}, 32)))
	for _, keys := range [][][]byte{{bytes.Repeat([]byte{8}, 32)}, nil} {
		if _, err := startOutsider(t, g, peerTLSOf(t, ca, ca, "impostor"), keys); err == nil {
			t.Errorf("a relay with gossip keys %x joined", keys)
		}
	}
	for _, m := range g.live() {
		if got := m.store.Members(); len(got) != 2 {
			t.Errorf("%s sees %v", m.name, got)
		}
	}
}

// TestInsecurePeersRefusedOffLoopback: a relay whose gossip or peer
// address other hosts reach does not start without peer TLS and a gossip
// key, unless InsecurePeers. Nothing binds these addresses: the check comes
// first.
func TestInsecurePeersRefusedOffLoopback(t *testing.T) {
	for _, addrs := range [][2]string{{"10.0.0.1:7947", "127.0.0.1:7401"}, {"127.0.0.1:7947", "192.0.2.1:7401"}} {
		cfg := circulate.DefaultConfig()
		cfg.Name, cfg.GossipAddr, cfg.PeerAddr = "r", addrs[0], addrs[1]
		_, err := circulate.New(cfg)
		if !errors.Is(err, membership.ErrInsecurePeers) {
			t.Errorf("gossip %s, peer %s: %v, want ErrInsecurePeers", addrs[0], addrs[1], err)
		}
	}
}
