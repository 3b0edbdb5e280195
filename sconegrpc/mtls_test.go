package sconegrpc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/sconegrpc"
)

// testCA issues certificates for a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "scone test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, name string, serial int64, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestMTLSBinding: with client binding, a SCONE opens only for the mTLS
// client certificate that started the session (sconegrpc.PeerIdentity).
func TestMTLSBinding(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t)
	serverCreds := credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{ca.issue(t, "server", 2, true)},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.pool,
		MinVersion:   tls.VersionTLS13,
	})
	s := newSealer(t, scone.WithClientBinding(false))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(append(sconegrpc.ServerOptions(s), grpc.Creds(serverCreds))...)
	pb.RegisterInventoryServer(srv, shop.Inventory{})
	go srv.Serve(lis)
	defer srv.Stop()

	dial := func(name string, serial int64, h scone.Holder) pb.InventoryClient {
		creds := credentials.NewTLS(&tls.Config{
			Certificates: []tls.Certificate{ca.issue(t, name, serial, false)},
			RootCAs:      ca.pool,
			MinVersion:   tls.VersionTLS13,
		})
		conn, err := grpc.NewClient(lis.Addr().String(), append(sconegrpc.DialOptions(sconegrpc.WithHolder(h)), grpc.WithTransportCredentials(creds))...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return pb.NewInventoryClient(conn)
	}
	ctx := context.Background()
	alice := scone.NewDict()
	ac := dial("alice", 3, alice)
	if _, err := ac.Reserve(ctx, &pb.Reservation{Isbn: dune, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	// Mallory presents a copy of Alice's SCONE over her own certificate.
	stolen := scone.NewDict()
	for _, tok := range alice.Tokens() {
		stolen.Put(tok)
	}
	_, err = dial("mallory", 4, stolen).Held(ctx, &pb.HeldRequest{})
	if status.Code(err) != codes.PermissionDenied || scone.CodeOf(err) != scone.CodeWrongClient {
		t.Fatalf("a stolen SCONE: %v", err)
	}
	r, err := ac.Held(ctx, &pb.HeldRequest{})
	if err != nil || len(r.Items) != 1 {
		t.Fatalf("the owner after the theft attempt: %v %v", r, err)
	}
}
