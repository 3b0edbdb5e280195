package sconegrpc_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/pki"
	"github.com/scone-project/scone/sconegrpc"
)

// identityServer is a real gRPC server over mTLS on 127.0.0.1 that records
// what each Identity names the caller of each call.
type identityServer struct {
	addr string
	ca   *pki.CA

	mu    sync.Mutex
	names map[string][]string // by identity function: the names, call by call
}

func newIdentityServer(t *testing.T, ids map[string]sconegrpc.Identity) *identityServer {
	t.Helper()
	ca, err := pki.NewCA("identity test CA")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Server("server")
	if err != nil {
		t.Fatal(err)
	}
	s := &identityServer{ca: ca, names: map[string][]string{}}
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for name, id := range ids {
			n, err := id(ctx)
			if err != nil {
				n = "error: " + scone.CodeOf(err).String()
			}
			s.names[name] = append(s.names[name], n)
		}
		return h(ctx, req)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.ServerTLS(cert))), grpc.UnaryInterceptor(record))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	s.addr = lis.Addr().String()
	return s
}

// call makes one call presenting cert, with the metadata md, and returns
// the name each identity function gave.
func (s *identityServer) call(t *testing.T, cert tls.Certificate, md ...string) map[string]string {
	t.Helper()
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(credentials.NewTLS(s.ca.ClientTLS(&cert))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := metadata.AppendToOutgoingContext(t.Context(), md...)
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]string{}
	for name, ns := range s.names {
		out[name] = ns[len(ns)-1]
	}
	return out
}

// TestRenewedCertificateKeepsIdentity: a client whose certificate is
// renewed (a new key, the same SPIFFE ID and subject) keeps its name under
// CertURI and CertSubject, so its sessions survive the renewal; under
// CertHash it becomes another client. Another client's certificate never
// gets its name.
func TestRenewedCertificateKeepsIdentity(t *testing.T) {
	t.Parallel()
	s := newIdentityServer(t, map[string]sconegrpc.Identity{
		"uri":     sconegrpc.CertIdentity(sconegrpc.CertURI),
		"subject": sconegrpc.CertIdentity(sconegrpc.CertSubject),
		"hash":    sconegrpc.CertIdentity(sconegrpc.CertHash),
	})
	issue := func(cn, uri string) tls.Certificate {
		c, err := s.ca.Client(cn, uri)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	alice := s.call(t, issue("alice", "spiffe://example.org/shopper/alice"))
	renewed := s.call(t, issue("alice", "spiffe://example.org/shopper/alice"))
	bob := s.call(t, issue("bob", "spiffe://example.org/shopper/bob"))
	noURI := s.call(t, issue("carol", ""))

	if alice["uri"] != "uri:spiffe://example.org/shopper/alice" || alice["subject"] != "subject:CN=alice" {
		t.Errorf("alice is named %v", alice)
	}
	if renewed["uri"] != alice["uri"] || renewed["subject"] != alice["subject"] {
		t.Errorf("a renewed certificate changed the name: %v, then %v", alice, renewed)
	}
	if renewed["hash"] == alice["hash"] {
		t.Errorf("CertHash gave a renewed certificate the old name %q", alice["hash"])
	}
	for _, k := range []string{"uri", "subject", "hash"} {
		if bob[k] == alice[k] {
			t.Errorf("%s: bob has alice's name %q", k, bob[k])
		}
	}
	if noURI["uri"] != "" || noURI["subject"] != "subject:CN=carol" {
		t.Errorf("a certificate without a URI SAN: %v", noURI)
	}
}

// TestHeaderCannotNameCertificateClient: a caller that sends another
// client's certificate name in a header gets a name in the "header:"
// namespace, never the certificate's; and without HeaderIdentity the header
// names no one.
func TestHeaderCannotNameCertificateClient(t *testing.T) {
	t.Parallel()
	s := newIdentityServer(t, map[string]sconegrpc.Identity{
		"cert":   sconegrpc.CertIdentity(sconegrpc.CertURI),
		"header": sconegrpc.HeaderIdentity("Scone-Client"),
	})
	mallory, err := s.ca.Client("mallory", "")
	if err != nil {
		t.Fatal(err)
	}
	got := s.call(t, mallory, "scone-client", "uri:spiffe://example.org/shopper/alice")
	if got["cert"] != "" {
		t.Errorf("a certificate without a URI SAN is named %q", got["cert"])
	}
	if got["header"] != "header:uri:spiffe://example.org/shopper/alice" {
		t.Errorf("the header names %q", got["header"])
	}
	long := strings.Repeat("a", 256)
	if got := s.call(t, mallory, "scone-client", long); got["header"] != "error: wrong_client" {
		t.Errorf("a 256-byte header value: %q", got["header"])
	}
	if got := s.call(t, mallory, "scone-client", "alice", "scone-client", "bob"); got["header"] != "error: wrong_client" {
		t.Errorf("two header values: %q", got["header"])
	}
	if got := s.call(t, mallory); got["header"] != "" {
		t.Errorf("no header: %q", got["header"])
	}
}
