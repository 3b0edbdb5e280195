package main

import (
	"context"
	"crypto/tls"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/daemontest"
	"github.com/scone-project/scone/internal/pki"
)

// TestRelaySessionTakeoverRefused runs a real "scone relay" process with
// mutual TLS in front of the bookstore, as the docs deploy it. Alice, named
// by the SPIFFE ID of her certificate, fills a cart. Mallory, with a
// certificate of her own from the same CA, sends every header that could
// name alice (the old scone-client header, alice's SPIFFE ID, the relay's
// own namespaces): she sees an empty cart, and her writes land in her own
// session, never in alice's. A caller without a certificate cannot even
// connect. Alice's renewed certificate (a new key, the same SPIFFE ID) keeps
// her session. And a relay started with no way to authenticate clients
// refuses to start.
func TestRelaySessionTakeoverRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "scone")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ca, err := pki.NewCA("clients")
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := ca.WriteCA(dir, "clients-ca")
	if err != nil {
		t.Fatal(err)
	}
	relayCert, err := ca.Server("relay")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := pki.WritePair(dir, "relay", relayCert)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring)
	if err != nil {
		t.Fatal(err)
	}
	d, err := shop.Deploy(sealer, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()

	// No --client-ca and no --identity-header: the relay refuses to start.
	out, err := exec.Command(bin, "relay", "--upstream="+d.Addrs(shop.RoleGateway)[0], "--listen="+daemontest.Addr(t), "--admin="+daemontest.Addr(t)).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no way to name clients") {
		t.Fatalf("a relay with no way to name clients: %v\n%s", err, out)
	}

	listen, admin := daemontest.Addr(t), daemontest.Addr(t)
	startDaemon(t, bin, dir, "relay", "relay", "--listen="+listen, "--admin="+admin,
		"--upstream="+d.Addrs(shop.RoleGateway)[0],
		"--tls-cert="+certFile, "--tls-key="+keyFile, "--client-ca="+caFile)
	daemontest.WaitFor(t, "http://"+admin+"/healthz")

	client := func(cn, uri string) pb.GatewayClient {
		t.Helper()
		var cfg *tls.Config
		if cn == "" {
			cfg = ca.ClientTLS(nil)
		} else {
			cert, err := ca.Client(cn, uri)
			if err != nil {
				t.Fatal(err)
			}
			cfg = ca.ClientTLS(&cert)
		}
		conn, err := grpc.NewClient(listen, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return pb.NewGatewayClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const aliceID = "spiffe://example.org/shopper/alice"
	alice := client("alice", aliceID)
	for range 2 {
		if _, err := alice.AddItem(ctx, &pb.AddItemRequest{Isbn: "9780441013593", Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	items := func(gw pb.GatewayClient, ctx context.Context) int32 {
		t.Helper()
		v, err := gw.GetCart(ctx, &pb.GetCartRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var n int32
		for _, l := range v.Lines {
			n += l.Quantity
		}
		return n
	}
	if n := items(alice, ctx); n != 2 {
		t.Fatalf("alice's cart holds %d books, want 2", n)
	}

	mallory := client("mallory", "spiffe://example.org/shopper/mallory")
	for i, claim := range [][]string{
		{"scone-client", "alice"},
		{"scone-client", aliceID},
		{"scone-client", "uri:" + aliceID},
		{"x-client", "uri:" + aliceID},
		{"authorization", "uri:" + aliceID},
	} {
		mctx := metadata.AppendToOutgoingContext(ctx, claim...)
		if n := items(mallory, mctx); n != int32(i) {
			t.Fatalf("mallory with %v sees %d books, want her own %d", claim, n, i)
		}
		if _, err := mallory.AddItem(mctx, &pb.AddItemRequest{Isbn: "9780441569595", Quantity: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := mallory.RemoveItem(mctx, &pb.RemoveItemRequest{Isbn: "9780441013593", Quantity: 2}); err == nil {
			t.Fatalf("mallory with %v removed books she never added", claim)
		}
	}
	if n := items(mallory, ctx); n != 5 {
		t.Fatalf("mallory's own cart holds %d books, want her 5", n)
	}
	if _, err := client("", "").GetCart(ctx, &pb.GetCartRequest{}); err == nil {
		t.Fatal("a caller without a client certificate was served")
	}

	renewed := client("alice", aliceID)
	if n := items(renewed, ctx); n != 2 {
		t.Fatalf("alice's renewed certificate sees %d books, want her 2", n)
	}
	v, err := renewed.GetCart(ctx, &pb.GetCartRequest{})
	if err != nil || len(v.Lines) != 1 || v.Lines[0].GetBook().GetIsbn() != "9780441013593" {
		t.Fatalf("alice's cart after mallory's tries: %v %v", v, err)
	}
}
