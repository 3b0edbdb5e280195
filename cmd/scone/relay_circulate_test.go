package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
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

// TestRelayCommandCirculate runs three "scone relay --circulate" in front
// of the bookstore: a client without SCONE code sends each call to another
// relay and keeps its cart; a relay leaves (SIGTERM) mid-session and
// nothing is lost; /metrics serves the documented scone_circulate_*
// metrics.
func TestRelayCommandCirculate(t *testing.T) {
	ring, _ := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	sealer, _ := scone.NewSealer(ring)
	d, err := shop.Deploy(sealer, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	type daemon struct {
		listen, admin string
		cancel        context.CancelFunc
		done          chan error
	}
	var relays []*daemon
	var seed string
	for i := range 3 {
		r := &daemon{listen: daemontest.Addr(t), admin: daemontest.Addr(t), done: make(chan error, 1)}
		gossip := daemontest.Addr(t)
		args := []string{"--circulate", "--name=relay-" + fmt.Sprint(i), "--listen=" + r.listen, "--admin=" + r.admin,
			"--gossip=" + gossip, "--peer-listen=" + daemontest.Addr(t), "--dwell=200ms",
			"--upstream=" + strings.Join(d.Addrs(shop.RoleGateway), ","), "--identity-header=scone-client"}
		if seed != "" {
			args = append(args, "--seeds="+seed)
		}
		seed = gossip
		var ctx context.Context
		ctx, r.cancel = context.WithCancel(context.Background())
		go func() {
			var out bytes.Buffer
			r.done <- runRelay(ctx, args, &out)
		}()
		relays = append(relays, r)
		waitListening(t, gossip) // the next relay joins it there
	}
	defer func() {
		for _, r := range relays {
			r.cancel()
		}
	}()
	for _, r := range relays {
		// Ready once it sees another relay. A relay that could not start
		// (an address taken meanwhile, say) ends with why, rather than
		// leaving /healthz unanswered.
		url := "http://" + r.admin + "/healthz"
		for deadline := time.Now().Add(10 * time.Second); ; {
			if resp, err := http.Get(url); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case err := <-r.done:
				t.Fatalf("relay on %s ended before it was ready: %v", r.listen, err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not answer 200", url)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	gws := map[string]pb.GatewayClient{}
	for _, r := range relays {
		conn, err := grpc.NewClient(r.listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		gws[r.listen] = pb.NewGatewayClient(conn)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "scone-client", "alice")
	ops := uint64(0)
	add := func(r *daemon) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			v, err := gws[r.listen].AddItem(ctx, &pb.AddItemRequest{Isbn: shop.Catalog[ops%uint64(len(shop.Catalog))].Isbn, Quantity: 1})
			if err == nil {
				if v.Operations != ops+1 {
					t.Fatalf("through %s: %d operations, want %d", r.listen, v.Operations, ops+1)
				}
				ops++
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("through %s: %v", r.listen, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	for i := range 9 {
		add(relays[i%3])
		if i%3 == 2 {
			time.Sleep(300 * time.Millisecond) // the copies move on
		}
	}
	served := map[string]bool{}
	for _, r := range relays {
		for name := range daemontest.Scrape(t, r.admin) { // and each scone_ family is documented
			served[name] = true
		}
	}
	for _, name := range []string{"scone_relay_requests_total", "scone_circulate_members", "scone_circulate_copies",
		"scone_circulate_handoffs_total", "scone_circulate_queries_total", "scone_circulate_query_seconds",
		"scone_circulate_writes_total", "scone_circulate_expired_total"} {
		if !served[name] {
			t.Errorf("no relay serves %s", name)
		}
	}
	if body := daemontest.Get(t, "http://"+relays[0].admin+"/metrics"); !strings.Contains(body, "scone_circulate_members 3") {
		t.Errorf("/metrics: the relay does not see the 3 relays:\n%.3000s", body)
	}
	if snap := daemontest.Get(t, "http://"+relays[1].admin+"/debug/scone/snapshot"); !strings.Contains(snap, "circulating among 3 relays") {
		t.Errorf("/debug/scone/snapshot: %s", snap)
	}
	if body := daemontest.Get(t, "http://"+relays[1].admin+"/healthz"); body != "ok\n" {
		t.Errorf("/healthz with 3 relays for 2 copies: %q, want ok", body)
	}

	// The first relay leaves: it hands the copies it holds on first.
	relays[0].cancel()
	select {
	case err := <-relays[0].done:
		if err != nil {
			t.Fatalf("relay ended with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the relay did not stop")
	}
	for i := range 6 {
		add(relays[1+i%2])
	}
	// Two relays for two copies: both hold every client's copies, which no
	// longer move. They serve, and /healthz warns.
	for _, r := range relays[1:] {
		body := daemontest.Get(t, "http://"+r.admin+"/healthz")
		if !strings.HasPrefix(body, "ok\nwarning: ") || !strings.Contains(body, "copies do not move: 2 live relays for 2 copies") {
			t.Errorf("/healthz with 2 relays for 2 copies: %q, want ok and a warning", body)
		}
	}
	for _, r := range relays[1:] {
		r.cancel()
		if err := <-r.done; err != nil {
			t.Fatalf("relay ended with %v", err)
		}
	}
}

// waitListening waits until addr accepts TCP connections (10 s at most).
func waitListening(t *testing.T, addr string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not accept connections: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
