package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/badinput"
	"github.com/scone-project/scone/internal/badinput/badgrpc"
	"github.com/scone-project/scone/internal/daemontest"
)

// daemon is a process a test started.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
}

// startDaemon starts bin with args, logging to dir/name.log; the process
// is killed when the test ends, and its log shown if the test failed.
func startDaemon(t *testing.T, bin, dir, name string, args ...string) *daemon {
	t.Helper()
	d := &daemon{name: name, cmd: exec.Command(bin, args...), log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd.Stdout, d.cmd.Stderr = f, f
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.cmd.Wait()
		f.Close()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.cmd.Process.Kill()
		<-d.done
		if t.Failed() {
			b, _ := os.ReadFile(d.log)
			t.Logf("log of %s:\n%s", name, b)
		}
	})
	return d
}

// alive reports whether the process is still running.
func (d *daemon) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

// TestBadInputProcesses sends every gRPC case of the bad-input corpus to a
// real "scone relay" process (in front of the bookstore, verifying with the
// corpus's keys) and a real node of the bookstore cluster example
// ("bookstore node", k=1, the corpus's key file). The relay passes a client's own SCONEs to the bookstore, so each
// case gets the status the server hook documents; a node ignores the
// SCONEs a client sends (the cluster holds them), so each succeeds with
// the state the node holds, unless gRPC itself refuses the metadata. After each case, alice's session, held by the
// relay and by the node, is intact, and after the corpus both processes
// still run and answer /healthz.
func TestBadInputProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c, err := badinput.Load("../../testdata/badinput")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin, bookstore := filepath.Join(dir, "scone"), filepath.Join(dir, "bookstore")
	if out, err := exec.Command("go", "build", "-o", dir+string(filepath.Separator), ".", "../../examples/bookstore").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	keys := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(keys, c.Keys, 0o600); err != nil {
		t.Fatal(err)
	}
	ring, err := scone.ReadKeyFile(keys)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring)
	if err != nil {
		t.Fatal(err)
	}
	shopD, err := shop.Deploy(sealer, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer shopD.Close()

	relayAddr, relayAdmin := daemontest.Addr(t), daemontest.Addr(t)
	relayP := startDaemon(t, bin, dir, "relay", "relay", "--listen="+relayAddr, "--admin="+relayAdmin,
		"--upstream="+shopD.Addrs(shop.RoleGateway)[0], "--identity-header=scone-client")
	nodeAddr, nodeAdmin := daemontest.Addr(t), daemontest.Addr(t)
	nodeP := startDaemon(t, bookstore, dir, "node", "node", "--name=n1", "--listen="+nodeAddr, "--admin="+nodeAdmin,
		"--peer-listen=127.0.0.1:0", "--gossip="+daemontest.Addr(t), "--keys="+keys, "--k=1", "--identity-header=scone-client")
	daemontest.WaitFor(t, "http://"+relayAdmin+"/healthz")
	daemontest.WaitFor(t, "http://"+nodeAdmin+"/healthz")

	type target struct {
		d    *daemon
		conn *grpc.ClientConn
		// holds: the node holds the state, whatever SCONEs the client sends.
		holds bool
	}
	var targets []target
	alice := metadata.Pairs("scone-client", "alice")
	actx := metadata.NewOutgoingContext(context.Background(), alice)
	for _, x := range []struct {
		d     *daemon
		addr  string
		holds bool
	}{{relayP, relayAddr, false}, {nodeP, nodeAddr, true}} {
		conn, err := grpc.NewClient(x.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		gw := pb.NewGatewayClient(conn)
		for range 2 {
			if _, err := gw.AddItem(actx, &pb.AddItemRequest{Isbn: "9780441013593", Quantity: 1}); err != nil {
				t.Fatalf("%s: %v", x.d.name, err)
			}
		}
		targets = append(targets, target{x.d, conn, x.holds})
	}

	const method = "/bookstore.v1.Gateway/GetCart"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cases := c.Select(true)
	for _, cs := range cases {
		for _, tg := range targets {
			for _, b := range cs.BeforePayloads {
				before := badinput.Case{Carrier: badinput.Envelope, Payloads: [][]byte{b}}
				if err := badgrpc.Call(ctx, tg.conn, method, &before, alice, &pb.GetCartRequest{}, &pb.CartView{}); err != nil {
					t.Fatalf("%s, %s: the SCONE presented first: %v", tg.d.name, cs.Name, err)
				}
			}
			for _, body := range []bool{false, true} {
				if body && cs.Carrier != badinput.Envelope {
					continue
				}
				var v pb.CartView
				var err error
				if body {
					err = badgrpc.CallBody(ctx, tg.conn, method, &cs, alice, &pb.GetCartRequest{}, &v)
				} else {
					err = badgrpc.Call(ctx, tg.conn, method, &cs, alice, &pb.GetCartRequest{}, &v)
				}
				want, ops := cs.GRPC, cs.Operations
				if (tg.holds || cs.Carrier == badinput.Metadata) && cs.GRPC.Code != "" {
					// alice sent no SCONE the holder takes as hers: the
					// node holds her state itself, and to the relay a
					// value off the carrier is no SCONE.
					want, ops = &badinput.Expect{Code: "ok", Status: "OK"}, 2
				}
				if err := badgrpc.Check(err, want); err != nil {
					t.Errorf("%s, %s (body %v): %v", tg.d.name, cs.Name, body, err)
				} else if want.OK() && v.Operations != ops {
					t.Errorf("%s, %s (body %v): accepted with %d operations, want %d", tg.d.name, cs.Name, body, v.Operations, ops)
				}
			}
			v, err := pb.NewGatewayClient(tg.conn).GetCart(actx, &pb.GetCartRequest{})
			if err != nil || v.Operations != 2 || len(v.Lines) != 1 || v.Lines[0].Quantity != 2 {
				t.Fatalf("after %s, %s restores alice's cart as %v, %v; want 2 operations, 2 books", cs.Name, tg.d.name, v, err)
			}
		}
	}
	for _, tg := range targets {
		if !tg.d.alive() {
			t.Fatalf("%s exited during the corpus", tg.d.name)
		}
	}
	daemontest.WaitFor(t, "http://"+relayAdmin+"/healthz")
	daemontest.WaitFor(t, "http://"+nodeAdmin+"/healthz")
	if len(cases) < 30 {
		t.Errorf("only %d gRPC cases in the corpus", len(cases))
	}
}
