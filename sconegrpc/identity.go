package sconegrpc

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/scone-project/scone"
)

// Identity names the client of a call from what the call authenticates.
// Whoever holds state for a client (a relay, a cluster node, a server that
// binds SCONEs to clients) keys it by this name, so a caller must never be
// able to claim another's. It returns "" when the call proves no identity,
// and an error to refuse the call (for example a bearer token that does not
// verify); the error's scone.Code, if it has one, gives the call's status.
//
// The names of CertIdentity and HeaderIdentity carry a prefix of their
// own ("uri:", "subject:", "x509-sha256:", "header:"), so a name from one
// source can never equal a name from another. An Identity of your own
// should do the same.
type Identity func(ctx context.Context) (string, error)

// CertName selects what of a verified client certificate names the client.
type CertName int

const (
	// CertURI names the client by its certificate's first URI SAN (a SPIFFE
	// ID such as spiffe://example.org/shopper/alice): stable when the
	// certificate is renewed. A certificate without one names no one.
	CertURI CertName = iota
	// CertSubject names the client by its certificate's subject
	// distinguished name ("CN=alice,O=Example"): stable when renewed by the
	// same CA with the same subject.
	CertSubject
	// CertHash names the client by the SHA-256 of its certificate: a renewed
	// certificate is another client, and the sessions of the old one are
	// lost to it. Use it only where certificates are never renewed.
	CertHash
)

// CertIdentity names the client by its verified TLS client certificate
// (mutual TLS): the server must require and verify client certificates
// (tls.RequireAndVerifyClientCert, with the clients' CA), or no call has an
// identity. A call without a verified certificate names no one.
func CertIdentity(name CertName) Identity {
	return func(ctx context.Context) (string, error) {
		c := verifiedLeaf(ctx)
		if c == nil {
			return "", nil
		}
		return certName(c, name), nil
	}
}

// certName is the name of a verified certificate, as CertIdentity gives it.
func certName(c *x509.Certificate, name CertName) string {
	switch name {
	case CertURI:
		if len(c.URIs) > 0 {
			return "uri:" + c.URIs[0].String()
		}
		return ""
	case CertSubject:
		if s := c.Subject.String(); s != "" {
			return "subject:" + s
		}
		return ""
	default:
		sum := sha256.Sum256(c.Raw)
		return "x509-sha256:" + hex.EncodeToString(sum[:])
	}
}

// verifiedLeaf returns the call's client certificate if the server
// verified it, else nil.
func verifiedLeaf(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// HeaderIdentity names the client by the value of a metadata key, as
// "header:" and the value. It authenticates nothing: anyone who can reach
// the server can name any client and read and change its state. Use it only
// behind a proxy that authenticates every caller and sets the key itself
// (removing any value the caller sent), on a network only that proxy can
// reach. A value longer than 255 bytes, or one that is not printable ASCII,
// is refused.
func HeaderIdentity(key string) Identity {
	key = strings.ToLower(key)
	return func(ctx context.Context) (string, error) {
		v := metadata.ValueFromIncomingContext(ctx, key)
		if len(v) == 0 || v[0] == "" {
			return "", nil
		}
		if len(v) > 1 {
			return "", scone.NewError(scone.CodeWrongClient, "the identity header "+key+" appears more than once")
		}
		if len(v[0]) > 255 || !printable(v[0]) {
			return "", scone.NewError(scone.CodeWrongClient, "the identity header "+key+" is not a name")
		}
		return "header:" + v[0], nil
	}
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
