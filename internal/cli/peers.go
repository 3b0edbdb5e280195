package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/scone-project/scone/internal/membership"
	"github.com/scone-project/scone/sconegrpc"
)

// PeerFlags are the flags that secure the links between the members of a
// group (cluster nodes, circulating relays): --peer-cert, --peer-key and
// --peer-ca (mutual TLS of the peer service), --gossip-key-file (gossip
// encryption) and --insecure-peers.
type PeerFlags struct {
	cert, key, ca, gossipKeys *string
	insecure                  *bool
}

// PeerFlags adds the peer flags; who names the members ("nodes", "relays").
func (f *Flags) PeerFlags(who string) *PeerFlags {
	return &PeerFlags{
		cert:       f.String("peer-cert", "", "certificate (PEM) this member presents to the other "+who+", as server and as client; with --peer-key and --peer-ca. It must name the address the others reach this one at"),
		key:        f.String("peer-key", "", "private key (PEM) of --peer-cert"),
		ca:         f.String("peer-ca", "", "CA certificates (PEM) the other "+who+"' certificates must be signed by (keep a CA for the group alone)"),
		gossipKeys: f.String("gossip-key-file", "", "file of gossip keys (base64 of 16, 24 or 32 bytes), one a line, mode 0600: the first encrypts, all decrypt; SIGHUP reloads it (rotation: see docs/security.md). Make one with: head -c 32 /dev/urandom | base64"),
		insecure:   f.Bool("insecure-peers", false, "UNSAFE: run on a non-loopback gossip or peer address without --peer-cert and --gossip-key-file; anyone who reaches those addresses can join and read and write every client's state"),
	}
}

// Peers is what the peer flags give.
type Peers struct {
	// TLS is the configuration of the peer service (nil: plaintext).
	TLS *tls.Config
	// GossipKeys are the keys of --gossip-key-file (none: plaintext).
	GossipKeys [][]byte
	// KeyFile is --gossip-key-file, for reloading.
	KeyFile string
	// Insecure is --insecure-peers.
	Insecure bool
}

// Load reads the files the peer flags name.
func (p *PeerFlags) Load() (Peers, error) {
	out := Peers{KeyFile: *p.gossipKeys, Insecure: *p.insecure}
	switch {
	case *p.cert == "" && *p.key == "" && *p.ca == "":
	case *p.cert == "" || *p.key == "" || *p.ca == "":
		return out, errors.New("--peer-cert, --peer-key and --peer-ca go together")
	default:
		kp, err := tls.LoadX509KeyPair(*p.cert, *p.key)
		if err != nil {
			return out, fmt.Errorf("--peer-cert=%s, --peer-key=%s: %w", *p.cert, *p.key, err)
		}
		pem, err := os.ReadFile(*p.ca)
		if err != nil {
			return out, fmt.Errorf("--peer-ca=%s: %w", *p.ca, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return out, fmt.Errorf("--peer-ca=%s: no PEM certificate in it", *p.ca)
		}
		out.TLS = &tls.Config{Certificates: []tls.Certificate{kp}, RootCAs: pool, ClientCAs: pool, MinVersion: tls.VersionTLS13}
	}
	if out.KeyFile != "" {
		keys, err := ReadGossipKeys(out.KeyFile)
		if err != nil {
			return out, fmt.Errorf("--gossip-key-file=%s: %w", out.KeyFile, err)
		}
		out.GossipKeys = keys
	}
	return out, nil
}

// ReadGossipKeys reads a gossip key file: one key a line, in base64 (16,
// 24 or 32 bytes: AES-128, -192 or -256), the first the primary; blank
// lines and lines starting with # are skipped. A file that group or others
// may read is refused, as a key file is.
func ReadGossipKeys(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("gossip key file %s has mode %#o: it must be private to its owner; run: chmod 600 %s", path, perm, path)
	}
	var keys [][]byte
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64: %v", n, err)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if _, err := membership.Keyring(keys); err != nil {
		return nil, err
	}
	return keys, nil
}

// WriteGossipKeys writes a gossip key file (mode 0600) of keys, the first
// the primary.
func WriteGossipKeys(path string, keys [][]byte) error {
	var b bytes.Buffer
	for _, k := range keys {
		b.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	}
	return os.WriteFile(path, b.Bytes(), 0o600)
}

// ReloadGossipKeysOnHUP reloads the gossip key file path into set at every
// SIGHUP until ctx is done; a file that does not load leaves the keys as
// they were, and is logged.
func ReloadGossipKeysOnHUP(ctx context.Context, path string, set func([][]byte) error, log *slog.Logger) {
	if path == "" {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			keys, err := ReadGossipKeys(path)
			if err == nil {
				err = set(keys)
			}
			if err != nil {
				log.Error("gossip key file not reloaded; keeping the keys in use", "file", path, "err", err)
				continue
			}
			log.Info("gossip key file reloaded", "file", path, "keys", len(keys))
		}
	}()
}

// CertIdentity returns the identity function of an --identity value:
// cert-uri, cert-subject or cert-hash.
func CertIdentity(v string) (sconegrpc.Identity, error) {
	switch v {
	case "cert-uri":
		return sconegrpc.CertIdentity(sconegrpc.CertURI), nil
	case "cert-subject":
		return sconegrpc.CertIdentity(sconegrpc.CertSubject), nil
	case "cert-hash":
		return sconegrpc.CertIdentity(sconegrpc.CertHash), nil
	}
	return nil, fmt.Errorf("--identity=%s: want cert-uri, cert-subject or cert-hash", v)
}
