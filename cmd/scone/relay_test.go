package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/daemontest"
)

// TestRelayCommand runs "scone relay" in front of the bookstore, relays a
// session of a client without SCONE code, and scrapes /metrics and
// /healthz. Flags come from both the command line and the environment.
func TestRelayCommand(t *testing.T) {
	ring, _ := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	sealer, _ := scone.NewSealer(ring)
	d, err := shop.Deploy(sealer, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	listen, admin := daemontest.Addr(t), daemontest.Addr(t)
	t.Setenv("SCONE_RELAY_ADMIN", admin)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- runRelay(ctx, []string{"--listen=" + listen, "--upstream=" + strings.Join(d.Addrs(shop.RoleGateway), ","), "--identity-header=scone-client"}, &out)
	}()
	daemontest.WaitFor(t, "http://"+admin+"/healthz")

	conn, err := grpc.NewClient(listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gw := pb.NewGatewayClient(conn)
	cctx := metadata.AppendToOutgoingContext(context.Background(), "scone-client", "alice")
	for range 2 {
		if _, err := gw.AddItem(cctx, &pb.AddItemRequest{Isbn: "9780441013593", Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := gw.GetCart(cctx, &pb.GetCartRequest{})
	if err != nil || v.Lines[0].Quantity != 2 {
		t.Fatalf("through scone relay: %v %v", v, err)
	}

	daemontest.Scrape(t, admin, "scone_relay_requests_total", "scone_relay_scones_stored_total",
		"scone_relay_scones_attached_total", "scone_relay_store_seconds", "go_goroutines")
	if body := daemontest.Get(t, "http://"+admin+"/metrics"); !strings.Contains(body, `scone_relay_requests_total{code="OK"} 3`) {
		t.Errorf("/metrics does not count the 3 calls relayed:\n%.2000s", body)
	}
	if snap := daemontest.Get(t, "http://"+admin+"/debug/scone/snapshot"); !strings.Contains(snap, "in this relay's memory: 1 clients") {
		t.Errorf("/debug/scone/snapshot: %s", snap)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("relay ended with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the relay did not stop")
	}
}

func TestRelayFlagFromEnvironment(t *testing.T) {
	t.Setenv("SCONE_RELAY_STORE", "tape")
	var out bytes.Buffer
	err := runRelay(context.Background(), []string{"--upstream=127.0.0.1:1", "--identity-header=scone-client"}, &out)
	if err == nil || !strings.Contains(err.Error(), `--store="tape"`) {
		t.Fatalf("a bad value from the environment: %v", err)
	}
	t.Setenv("SCONE_RELAY_REPLICAS", "many")
	err = runRelay(context.Background(), []string{"--upstream=127.0.0.1:1", "--identity-header=scone-client"}, &out)
	if err == nil || !strings.Contains(err.Error(), "SCONE_RELAY_REPLICAS") {
		t.Fatalf("an unparsable value from the environment: %v", err)
	}
}

// TestRelayMaxClockSkewFlag: a negative tolerance fails at start, naming
// the flag.
func TestRelayMaxClockSkewFlag(t *testing.T) {
	var out bytes.Buffer
	err := runRelay(context.Background(), []string{"--upstream=127.0.0.1:1", "--identity-header=scone-client", "--max-clock-skew=-1s"}, &out)
	if err == nil || !strings.Contains(err.Error(), "--max-clock-skew=-1s") {
		t.Fatalf("a negative --max-clock-skew: %v", err)
	}
}

func TestCommandFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"relay", "--help"}, 0, "SCONE_RELAY_<FLAG>"},
		{[]string{"relay"}, 1, "--upstream is required"},
		{[]string{"relay", "--upstream=x:1", "--store=disk"}, 1, `--store="disk"`},
		{[]string{"keygen", "--help"}, 0, "scone-keys-v1"},
		{[]string{"demo"}, 2, `unknown command "demo"`},
		{[]string{}, 2, "usage: scone"},
	} {
		var out bytes.Buffer
		if code := run(tc.args, &out, &out); code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("scone %v: exit %d, output %q; want exit %d and %q", tc.args, code, out.String(), tc.code, tc.want)
		}
	}
}

// TestRelayRefusesWithoutIdentity: a relay given no way to authenticate
// its clients (no --client-ca) and no explicit --identity-header refuses to
// start, rather than trusting a name any caller could send.
func TestRelayRefusesWithoutIdentity(t *testing.T) {
	var out bytes.Buffer
	err := runRelay(context.Background(), []string{"--upstream=127.0.0.1:1"}, &out)
	if err == nil || !strings.Contains(err.Error(), "--client-ca") || !strings.Contains(err.Error(), "--identity-header") {
		t.Fatalf("a relay with no client identity: %v", err)
	}
	err = runRelay(context.Background(), []string{"--upstream=127.0.0.1:1", "--identity=cert-name"}, &out)
	if err == nil || !strings.Contains(err.Error(), "--identity=cert-name") {
		t.Fatalf("a bad --identity: %v", err)
	}
}
