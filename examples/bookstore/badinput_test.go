package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/internal/badinput"
	"github.com/scone-project/scone/internal/badinput/badgrpc"
	"github.com/scone-project/scone/internal/badinput/badhttp"
	"github.com/scone-project/scone/sconegrpc"
	"github.com/scone-project/scone/sconehttp"
)

// TestBadInputProcesses runs the bookstore as three server processes
// (inventory, cart, and the gateway with its HTTP front), with the
// bad-input corpus's key file, and sends every case of the corpus to the
// gateway: the gRPC cases in metadata and in the message body, the HTTP
// cases to its HTTP front. Each gets the status the manifest documents;
// after each, a gRPC shopper and an HTTP shopper, each holding its own
// SCONEs, still find their carts; and after the corpus every process still
// runs and serves.
func TestBadInputProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c, err := badinput.Load("../../testdata/badinput")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bookstore")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	keys := filepath.Join(dir, "keys.json")
	if err := os.WriteFile(keys, c.Keys, 0o600); err != nil {
		t.Fatal(err)
	}
	inv, cart, gw, front := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	var procs []*exec.Cmd
	exited := make(chan string, 3)
	for _, args := range [][]string{
		{"-role=inventory", "-listen=" + inv},
		{"-role=cart", "-listen=" + cart, "-inventory=" + inv},
		{"-role=gateway", "-listen=" + gw, "-cart=" + cart, "-inventory=" + inv, "-http=" + front},
	} {
		cmd := exec.Command(bin, append(args, "-keys="+keys)...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
		go func() {
			cmd.Wait()
			exited <- args[0]
		}()
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.Process.Kill()
		}
		for range procs {
			<-exited
		}
	})
	base := "http://" + front + "/shop"
	waitHTTP(t, base+"/books")

	// The shoppers, each the holder of its own SCONEs.
	conn, err := grpc.NewClient(gw, append(sconegrpc.DialOptions(sconegrpc.WithHolder(scone.NewDict())),
		grpc.WithTransportCredentials(insecure.NewCredentials()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gshopper := pb.NewGatewayClient(conn)
	hshopper := &http.Client{Transport: sconehttp.NewTransport(nil)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for range 2 {
		if _, err := gshopper.AddItem(ctx, &pb.AddItemRequest{Isbn: "9780441013593", Quantity: 1}); err != nil {
			t.Fatal(err)
		}
		resp, err := hshopper.Post(base+"/cart/items", "application/json", strings.NewReader(`{"isbn":"9780441013593","quantity":1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("adding a book over HTTP: %s", resp.Status)
		}
	}
	intact := func(after string) {
		t.Helper()
		v, err := gshopper.GetCart(ctx, &pb.GetCartRequest{})
		if err != nil || !twoBooks(v) {
			t.Fatalf("after %s, the gRPC shopper's cart is %v, %v; want 2 operations, 2 books", after, v, err)
		}
		resp, err := hshopper.Get(base + "/cart")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var hv pb.CartView
		if err := protojson.Unmarshal(b, &hv); err != nil || !twoBooks(&hv) {
			t.Fatalf("after %s, the HTTP shopper's cart is %s (%v); want 2 operations, 2 books", after, b, err)
		}
	}

	raw, err := grpc.NewClient(gw, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	const method = "/bookstore.v1.Gateway/GetCart"
	// The servers spend each version once (a mark store): presenting a
	// gateway SCONE that was served before is a replay, refused.
	spent := map[string]bool{}
	replay := func(cs *badinput.Case, want, refused *badinput.Expect) *badinput.Expect {
		if !want.OK() || cs.Carrier != badinput.Envelope {
			return want
		}
		if h, err := scone.ParseHeader(cs.Payloads[0]); err != nil || h.Service != c.Service {
			return want
		}
		if spent[string(cs.Payloads[0])] {
			return refused
		}
		spent[string(cs.Payloads[0])] = true
		return want
	}
	grpcRefused := &badinput.Expect{Code: "rolled_back", Status: "FailedPrecondition"}
	httpRefused := &badinput.Expect{Code: "rolled_back", Status: "409"}
	for _, cs := range c.Select(true) {
		for _, b := range cs.BeforePayloads {
			before := badinput.Case{Carrier: badinput.Envelope, Payloads: [][]byte{b}}
			if err := badgrpc.Call(ctx, raw, method, &before, nil, &pb.GetCartRequest{}, &pb.CartView{}); err != nil {
				t.Fatalf("%s: the SCONE presented first: %v", cs.Name, err)
			}
			spent[string(b)] = true
		}
		for _, body := range []bool{false, true} {
			if body && cs.Carrier != badinput.Envelope {
				continue
			}
			want := cs.GRPC
			if cs.HighWater != nil {
				want = cs.HighWater
			}
			want = replay(&cs, want, grpcRefused)
			var v pb.CartView
			var err error
			if body {
				err = badgrpc.CallBody(ctx, raw, method, &cs, nil, &pb.GetCartRequest{}, &v)
			} else {
				err = badgrpc.Call(ctx, raw, method, &cs, nil, &pb.GetCartRequest{}, &v)
			}
			if err := badgrpc.Check(err, want); err != nil {
				t.Errorf("gRPC %s (body %v): %v", cs.Name, body, err)
			} else if want.OK() && v.Operations != cs.Operations {
				t.Errorf("gRPC %s (body %v): accepted with %d operations, want %d", cs.Name, body, v.Operations, cs.Operations)
			}
		}
		intact(cs.Name)
	}
	for _, cs := range c.Select(false) {
		for _, b := range cs.BeforePayloads {
			if spent[string(b)] {
				continue
			}
			before := badinput.Case{Carrier: badinput.Envelope, Payloads: [][]byte{b}}
			if status, _, body, err := badhttp.Get(base+"/cart", &before); err != nil || status != http.StatusOK {
				t.Fatalf("%s: the SCONE presented first: %d %s %v", cs.Name, status, body, err)
			}
			spent[string(b)] = true
		}
		want := cs.HTTP
		if cs.HighWater != nil {
			want = httpRefused
		}
		want = replay(&cs, want, httpRefused)
		status, code, body, err := badhttp.Get(base+"/cart", &cs)
		if err == nil {
			err = badhttp.Check(status, code, want)
		}
		if err == nil && want.OK() {
			var v pb.CartView
			if err = protojson.Unmarshal(body, &v); err == nil && v.Operations != cs.Operations {
				err = fmt.Errorf("accepted with %d operations, want %d", v.Operations, cs.Operations)
			}
		}
		if err != nil {
			t.Errorf("HTTP %s: %v", cs.Name, err)
		}
		intact(cs.Name)
	}
	select {
	case name := <-exited:
		t.Fatalf("the %s process exited during the corpus", strings.TrimPrefix(name, "-role="))
	default:
	}
	waitHTTP(t, base+"/books")
}

// twoBooks reports whether v is the shoppers' cart: two operations, two
// copies of one book.
func twoBooks(v *pb.CartView) bool {
	return v.GetOperations() == 2 && len(v.GetLines()) == 1 && v.GetLines()[0].GetQuantity() == 2
}
