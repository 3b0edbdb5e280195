package membership

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
)

// key returns a gossip key of 32 bytes made of b.
func key(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// startMember starts a member gossiping on loopback with keys (none:
// plaintext), joining seeds. changed receives a value at every change of
// its view.
func startMember(t *testing.T, name string, keys [][]byte, seeds ...string) (*Group[*grpc.ClientConn], chan struct{}, error) {
	t.Helper()
	changed := make(chan struct{}, 64)
	g, err := Start(Config{
		Name: name, GossipAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:1", Seeds: seeds,
		GossipKeys: keys, Timeout: time.Second, RejoinInterval: time.Hour,
		OnChange: func() {
			select {
			case changed <- struct{}{}:
			default:
			}
		},
	}, func(c *grpc.ClientConn) *grpc.ClientConn { return c })
	if err == nil {
		t.Cleanup(g.Close)
	}
	return g, changed, err
}

// waitMembers waits until g sees n members.
func waitMembers(t *testing.T, g *Group[*grpc.ClientConn], changed chan struct{}, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for len(g.View().Members) != n {
		select {
		case <-changed:
		case <-timeout:
			t.Fatalf("%d members after 10s, want %d", len(g.View().Members), n)
		}
	}
}

// TestGossipWrongKeyCannotJoin: a process with another gossip key, or none,
// cannot join a group whose gossip is encrypted (memberlist drops what it
// cannot open), and the group does not see it; one with the key can.
func TestGossipWrongKeyCannotJoin(t *testing.T) {
	a, changed, err := startMember(t, "a", [][]byte{key(1)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		keys [][]byte
	}{
		{"other-key", [][]byte{key(2)}},
		{"no-key", nil},
	} {
		if _, _, err := startMember(t, c.name, c.keys, a.GossipAddr()); err == nil {
			t.Errorf("%s: joined a group encrypted with another key", c.name)
		}
	}
	if m := a.View().Members; len(m) != 1 {
		t.Fatalf("the group sees %v after the impostors tried to join, want only a", m)
	}
	if _, _, err := startMember(t, "b", [][]byte{key(1)}, a.GossipAddr()); err != nil {
		t.Fatalf("a member with the group's key: %v", err)
	}
	waitMembers(t, a, changed, 2)
}

// TestGossipKeyRotation rotates the gossip key of a running member in the
// three steps of docs/security.md: a member that knows only the new key
// joins once the group encrypts with it, and one that knows only the old
// key no longer can once it is removed.
func TestGossipKeyRotation(t *testing.T) {
	old, next := key(1), key(2)
	a, changed, err := startMember(t, "a", [][]byte{old})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetGossipKeys([][]byte{old, next}); err != nil { // 1. install the new key
		t.Fatal(err)
	}
	if _, _, err := startMember(t, "early", [][]byte{next}, a.GossipAddr()); err == nil {
		t.Error("a member with only the new key joined before the group encrypts with it")
	}
	if err := a.SetGossipKeys([][]byte{next, old}); err != nil { // 2. encrypt with it
		t.Fatal(err)
	}
	if _, _, err := startMember(t, "b", [][]byte{next}, a.GossipAddr()); err != nil {
		t.Fatalf("a member with the new key, once the group encrypts with it: %v", err)
	}
	waitMembers(t, a, changed, 2)
	if err := a.SetGossipKeys([][]byte{next}); err != nil { // 3. remove the old key
		t.Fatal(err)
	}
	if _, _, err := startMember(t, "late", [][]byte{old}, a.GossipAddr()); err == nil {
		t.Error("a member with the removed key joined")
	}
	if err := a.SetGossipKeys([][]byte{[]byte("short")}); err == nil {
		t.Error("a 5-byte gossip key was taken")
	}
}

// TestInsecurePeersRefusedOffLoopback: a member whose gossip or peer
// address other hosts can reach refuses to start unless its peer links are
// authenticated and encrypted (PeerTLS and a gossip key), or InsecurePeers
// says so. Only the configuration is checked: nothing binds these
// addresses.
func TestInsecurePeersRefusedOffLoopback(t *testing.T) {
	secure := &tls.Config{}
	for _, c := range []struct {
		gossip, peer string
		tls          *tls.Config
		keys         [][]byte
		insecure     bool
		refused      bool
	}{
		{gossip: "127.0.0.1:7946", peer: "127.0.0.1:7601"},
		{gossip: "[::1]:7946", peer: "127.0.0.2:7601"},
		{gossip: "10.0.0.1:7946", peer: "127.0.0.1:7601", refused: true},
		{gossip: "127.0.0.1:7946", peer: "10.0.0.1:7601", refused: true},
		{gossip: "0.0.0.0:7946", peer: "127.0.0.1:7601", refused: true},
		{gossip: ":7946", peer: "127.0.0.1:7601", refused: true},
		{gossip: "localhost:7946", peer: "127.0.0.1:7601", refused: true},
		{gossip: "10.0.0.1:7946", peer: "10.0.0.1:7601", tls: secure, refused: true},
		{gossip: "10.0.0.1:7946", peer: "10.0.0.1:7601", keys: [][]byte{key(1)}, refused: true},
		{gossip: "10.0.0.1:7946", peer: "10.0.0.1:7601", tls: secure, keys: [][]byte{key(1)}},
		{gossip: "10.0.0.1:7946", peer: "10.0.0.1:7601", insecure: true},
	} {
		t.Run(fmt.Sprintf("%s,%s,tls=%v,keys=%d,insecure=%v", c.gossip, c.peer, c.tls != nil, len(c.keys), c.insecure), func(t *testing.T) {
			cfg := Config{Name: "n", GossipAddr: c.gossip, PeerAddr: c.peer, PeerTLS: c.tls, GossipKeys: c.keys, InsecurePeers: c.insecure}
			err := cfg.Check()
			if refused := errors.Is(err, ErrInsecurePeers); refused != c.refused {
				t.Fatalf("Check: %v, want refused %v", err, c.refused)
			}
			if c.refused {
				if _, err := Start(cfg, func(c *grpc.ClientConn) *grpc.ClientConn { return c }); !errors.Is(err, ErrInsecurePeers) {
					t.Fatalf("Start: %v, want ErrInsecurePeers", err)
				}
			}
			if got, want := cfg.Insecure(), c.insecure; got != want {
				t.Errorf("Insecure: %v, want %v", got, want)
			}
		})
	}
}
