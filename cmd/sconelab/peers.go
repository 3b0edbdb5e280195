package main

import (
	"crypto/rand"
	"crypto/tls"
	"os"
	"path/filepath"
	"sync"

	"github.com/scone-project/scone/internal/cli"
	"github.com/scone-project/scone/internal/pki"
)

// peerSecrets secure the links between the members of a lab group (cluster
// nodes, circulating relays) as in production: a CA of the group that
// issues each member's peer certificate (mutual TLS), and a gossip key.
type peerSecrets struct {
	ca  *pki.CA
	key []byte // the gossip key

	mu    sync.Mutex
	dir   string // where the files are, once written
	files map[string][]string
}

func newPeerSecrets() (*peerSecrets, error) {
	ca, err := pki.NewCA("sconelab peers")
	if err != nil {
		return nil, err
	}
	key := make([]byte, 32)
	rand.Read(key)
	return &peerSecrets{ca: ca, key: key, files: map[string][]string{}}, nil
}

// tls returns the PeerTLS of the member name.
func (p *peerSecrets) tls(name string) (*tls.Config, error) {
	cert, err := p.ca.Server(name)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: p.ca.Pool(), MinVersion: tls.VersionTLS13}, nil
}

// gossipKeys returns the members' gossip keys.
func (p *peerSecrets) gossipKeys() [][]byte { return [][]byte{p.key} }

// args returns the flags that give the member name, a daemon, its peer
// certificate and the gossip key, writing the files under dir on first
// use.
func (p *peerSecrets) args(dir, name string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if a, ok := p.files[name]; ok {
		return a, nil
	}
	if p.dir == "" {
		d := filepath.Join(dir, "peers")
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		if _, err := p.ca.WriteCA(d, "ca"); err != nil {
			return nil, err
		}
		if err := cli.WriteGossipKeys(filepath.Join(d, "gossip.keys"), p.gossipKeys()); err != nil {
			return nil, err
		}
		p.dir = d
	}
	cert, err := p.ca.Server(name)
	if err != nil {
		return nil, err
	}
	certFile, keyFile, err := pki.WritePair(p.dir, name, cert)
	if err != nil {
		return nil, err
	}
	a := []string{"--peer-cert=" + certFile, "--peer-key=" + keyFile, "--peer-ca=" + filepath.Join(p.dir, "ca.pem"),
		"--gossip-key-file=" + filepath.Join(p.dir, "gossip.keys")}
	p.files[name] = a
	return a, nil
}

// peerArgs returns the peer flags of the run's member name (see
// peerSecrets.args): the run's nodes and circulating relays talk to each
// other over mutual TLS, and gossip encrypted, as in production.
func (r *chaosRun) peerArgs(name string) ([]string, error) {
	if r.peers == nil {
		p, err := newPeerSecrets()
		if err != nil {
			return nil, err
		}
		r.peers = p
	}
	return r.peers.args(r.dir, name)
}
