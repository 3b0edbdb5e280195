package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

// TestRelayLosesNoCallWhenGatewayKilled runs three bookstore gateway
// processes behind a "scone relay" process that re-sends the gateway's
// calls (--retry=/bookstore.v1.Gateway/: they change state, so the proto
// does not declare them idempotent), and 16 clients without any SCONE code,
// each a session of its own, changing their carts as fast as they can for
// 15 s (4 s with -short). A third of the way through, one gateway is killed
// with SIGKILL. No call may fail, and every reply, and each cart at the
// end, must show exactly the changes acknowledged: none lost, none applied
// twice (the gateway counts a session's changes in its SCONE).
func TestRelayLosesNoCallWhenGatewayKilled(t *testing.T) {
	run := 15 * time.Second
	if testing.Short() {
		run = 4 * time.Second
	}
	dir := t.TempDir()
	bin, bookstore := filepath.Join(dir, "scone"), filepath.Join(dir, "bookstore")
	if out, err := exec.Command("go", "build", "-o", dir+string(filepath.Separator), ".", "../../examples/bookstore").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys.json")
	if err := scone.WriteKeyFile(keys, ring); err != nil {
		t.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring)
	if err != nil {
		t.Fatal(err)
	}
	backends, err := shop.Deploy(sealer, 1) // the cart and inventory tiers
	if err != nil {
		t.Fatal(err)
	}
	defer backends.Close()

	gateways := make([]*daemon, 3)
	addrs := make([]string, 3)
	for i := range gateways {
		addrs[i] = daemontest.Addr(t)
		gateways[i] = startDaemon(t, bookstore, dir, fmt.Sprintf("gateway%d", i+1), "-role=gateway", "-listen="+addrs[i], "-keys="+keys,
			"-cart="+backends.Addrs(shop.RoleCart)[0], "-inventory="+backends.Addrs(shop.RoleInventory)[0])
		waitServing(t, addrs[i])
	}
	relayAddr, admin := daemontest.Addr(t), daemontest.Addr(t)
	startDaemon(t, bin, dir, "relay", "relay", "--listen="+relayAddr, "--admin="+admin, "--upstream="+strings.Join(addrs, ","),
		"--identity-header=scone-client", "--retry=/bookstore.v1.Gateway/")
	daemontest.WaitFor(t, "http://"+admin+"/healthz")

	conn, err := grpc.NewClient(relayAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gw := pb.NewGatewayClient(conn)

	ctx, stop := context.WithTimeout(context.Background(), run)
	defer stop()
	var (
		wg        sync.WaitGroup
		acked     atomic.Int64
		mu        sync.Mutex
		failures  []string
		carts     = make([]map[string]int32, 16)
		changes   = make([]uint64, 16)
		sessionMD = func(i int) context.Context {
			return metadata.AppendToOutgoingContext(context.Background(), "scone-client", fmt.Sprintf("shopper-%d", i))
		}
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		failures = append(failures, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for i := range carts {
		carts[i] = map[string]int32{}
		wg.Go(func() {
			cart, sctx := carts[i], sessionMD(i)
			for n := 0; ctx.Err() == nil; n++ {
				isbn := shop.Catalog[n%len(shop.Catalog)].Isbn
				add := (n/len(shop.Catalog))%2 == 0 || cart[isbn] == 0
				cctx, cancel := context.WithTimeout(sctx, 10*time.Second)
				var v *pb.CartView
				var err error
				if add {
					v, err = gw.AddItem(cctx, &pb.AddItemRequest{Isbn: isbn, Quantity: 1})
				} else {
					v, err = gw.RemoveItem(cctx, &pb.RemoveItemRequest{Isbn: isbn, Quantity: 1})
				}
				cancel()
				if err != nil {
					fail("shopper-%d, change %d: %v", i, changes[i]+1, err)
					return // its outcome is unknown: the session's model stops here
				}
				acked.Add(1)
				changes[i]++
				if add {
					cart[isbn]++
				} else {
					cart[isbn]--
				}
				if msg := compare(v, cart, changes[i]); msg != "" {
					fail("shopper-%d, change %d: %s", i, changes[i], msg)
					return
				}
			}
		})
	}
	select {
	case <-time.After(run / 3):
	case <-ctx.Done():
	}
	killed := acked.Load()
	if err := gateways[1].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-gateways[1].done
	wg.Wait()

	if len(failures) > 0 {
		t.Errorf("%d sessions failed:\n%s", len(failures), strings.Join(failures, "\n"))
	}
	for i, cart := range carts {
		v, err := gw.GetCart(sessionMD(i), &pb.GetCartRequest{})
		if err != nil {
			t.Fatalf("shopper-%d: %v", i, err)
		}
		if msg := compare(v, cart, changes[i]); msg != "" {
			t.Errorf("shopper-%d at the end: %s", i, msg)
		}
	}
	if !gateways[0].alive() || !gateways[2].alive() {
		t.Error("a gateway that was not killed has exited")
	}
	metrics := daemontest.Get(t, "http://"+admin+"/metrics")
	var retried []string
	for l := range strings.Lines(metrics) {
		if strings.HasPrefix(l, "scone_relay_retries_total{") {
			retried = append(retried, strings.TrimSpace(l))
		}
	}
	t.Logf("%d changes acknowledged (%d before the kill), in %d sessions; re-sends: %v", acked.Load(), killed, len(carts), retried)
	if killed == 0 || acked.Load() == killed {
		t.Errorf("no load before or after the kill: %d changes before, %d in all", killed, acked.Load())
	}
}

// compare says how a cart view differs from the cart a session expects
// after n acknowledged changes, or returns "".
func compare(v *pb.CartView, want map[string]int32, n uint64) string {
	got := map[string]int32{}
	for _, l := range v.Lines {
		got[l.Book.Isbn] = l.Quantity
	}
	for isbn, q := range want {
		if q == 0 {
			delete(want, isbn)
		}
	}
	if v.Operations != n || len(got) != len(want) {
		return fmt.Sprintf("%d changes counted, %v in the cart; want %d and %v", v.Operations, got, n, want)
	}
	for isbn, q := range want {
		if got[isbn] != q {
			return fmt.Sprintf("%d changes counted, %v in the cart; want %d and %v", v.Operations, got, n, want)
		}
	}
	return ""
}

// waitServing waits, up to 10 s, until a gRPC server serves at addr: a call
// that waits for the connection to be ready.
func waitServing(t *testing.T, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pb.NewGatewayClient(conn).GetCart(ctx, &pb.GetCartRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("%s does not serve: %v", addr, err)
	}
}
