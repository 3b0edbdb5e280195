// Securing the links between members.
//
// Members talk two ways: memberlist gossip (UDP and TCP), and the peer
// service of the protocol package (gRPC). Gossip is encrypted and
// authenticated with memberlist's keyring (AES-GCM with a shared key: a
// packet sealed with a key the member does not hold is dropped, so a
// process without the key can neither join nor forge a member's state).
// Peer calls run over mutual TLS: each member presents a certificate of
// the group's CA, and checks the other's against the same CA, both when it
// serves and when it calls. A process without such a certificate can
// neither read nor write a record, even if it got into the member list.

package membership

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/hashicorp/memberlist"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// ServerOptions returns the options of a member's peer server: mutual TLS
// with peerTLS (see Config.PeerTLS), or none (plaintext) for nil.
func ServerOptions(peerTLS *tls.Config) []grpc.ServerOption {
	if peerTLS == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(credentials.NewTLS(serverTLS(peerTLS)))}
}

// serverTLS is peerTLS for serving: it requires a client certificate and
// verifies it against ClientCAs, or RootCAs when that is nil (one CA for
// the group).
func serverTLS(peerTLS *tls.Config) *tls.Config {
	c := peerTLS.Clone()
	c.ClientAuth = tls.RequireAndVerifyClientCert
	if c.ClientCAs == nil {
		c.ClientCAs = c.RootCAs
	}
	if c.MinVersion < tls.VersionTLS13 {
		c.MinVersion = tls.VersionTLS13
	}
	return c
}

// clientTLS is peerTLS for calling another member: it presents the same
// certificate and verifies the member's against RootCAs.
func clientTLS(peerTLS *tls.Config) *tls.Config {
	c := peerTLS.Clone()
	if c.MinVersion < tls.VersionTLS13 {
		c.MinVersion = tls.VersionTLS13
	}
	return c
}

// Keyring returns the memberlist keyring of keys: the first encrypts, all
// decrypt. Each key is 16, 24 or 32 bytes (AES-128, -192 or -256).
func Keyring(keys [][]byte) (*memberlist.Keyring, error) {
	if len(keys) == 0 {
		return nil, errors.New("no gossip key")
	}
	for i, k := range keys {
		if err := memberlist.ValidateKey(k); err != nil {
			return nil, fmt.Errorf("gossip key %d: %w", i+1, err)
		}
	}
	return memberlist.NewKeyring(keys[1:], keys[0])
}

// encrypted reports whether a memberlist configuration encrypts gossip.
func encrypted(mc *memberlist.Config) bool {
	return mc != nil && (len(mc.SecretKey) > 0 || mc.EncryptionEnabled())
}

// ErrInsecurePeers is returned for a member that would talk to its peers
// in the clear, or let anyone in, on an address other hosts may reach.
var ErrInsecurePeers = errors.New("peer links are neither encrypted nor authenticated on a non-loopback address")

// Check refuses a configuration whose links others could read or join: a
// gossip or peer address off loopback (any address but 127.0.0.0/8 and
// ::1, host names included) needs both PeerTLS and gossip keys (GossipKeys
// or a keyring in Memberlist), unless InsecurePeers. The peer address is
// not checked when Dial is set (the caller's own network).
func (c Config) Check() error {
	if c.InsecurePeers {
		return nil
	}
	var open []string
	if !loopback(c.GossipAddr) {
		open = append(open, "gossip address "+c.GossipAddr)
	}
	if c.Dial == nil && !loopback(c.PeerAddr) {
		open = append(open, "peer address "+c.PeerAddr)
	}
	if len(open) == 0 {
		return nil
	}
	var missing []string
	if c.PeerTLS == nil {
		missing = append(missing, "peer TLS (a certificate and CA of the group)")
	}
	if len(c.GossipKeys) == 0 && !encrypted(c.Memberlist) {
		missing = append(missing, "a gossip key")
	}
	switch len(missing) {
	case 0:
		return nil
	case 1:
		return fmt.Errorf("%w: %s without %s (or set InsecurePeers, only on a network no one else reaches)", ErrInsecurePeers, open[0], missing[0])
	}
	return fmt.Errorf("%w: %s without %s or %s (or set InsecurePeers, only on a network no one else reaches)", ErrInsecurePeers, open[0], missing[0], missing[1])
}

// Insecure reports whether the member runs off loopback with a link in the
// clear because InsecurePeers allows it: worth a loud warning.
func (c Config) Insecure() bool {
	if !c.InsecurePeers || (c.PeerTLS != nil && (len(c.GossipKeys) > 0 || encrypted(c.Memberlist))) {
		return false
	}
	return !loopback(c.GossipAddr) || (c.Dial == nil && !loopback(c.PeerAddr))
}

// loopback reports whether addr (host:port) is on a loopback IP address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
