package sconehttp_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/badinput"
	"github.com/scone-project/scone/internal/badinput/badhttp"
	"github.com/scone-project/scone/sconehttp"
)

// TestBadInput sends every HTTP case of the bad-input corpus to the
// bookstore's HTTP front (sconehttp.Middleware), from a client without the
// hook. Each must get the status the manifest documents, with the code in
// the Scone-Error header; after each, a shopper's own SCONEs (held by a
// sconehttp.Transport) still restore its cart.
func TestBadInput(t *testing.T) {
	c, err := badinput.Load("../testdata/badinput")
	if err != nil {
		t.Fatal(err)
	}
	primary, keys, err := scone.ParseKeyFile(c.Keys)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := scone.NewKeyRing(primary, keys...)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring)
	if err != nil {
		t.Fatal(err)
	}
	d, err := shop.Deploy(sealer, 1, shop.WithHTTP())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	base := "http://" + d.Replicas(shop.RoleGateway)[0].HTTPAddr
	shopper := &http.Client{Transport: sconehttp.NewTransport(nil)}
	for range 2 {
		resp, err := shopper.Post(base+"/shop/cart/items", "application/json", strings.NewReader(`{"isbn":"9780441013593","quantity":1}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("adding a book: %s", resp.Status)
		}
	}
	cases := c.Select(false)
	for _, cs := range cases {
		for _, b := range cs.BeforePayloads {
			before := badinput.Case{Carrier: badinput.Envelope, Payloads: [][]byte{b}}
			if status, _, body, err := badhttp.Get(base+"/shop/cart", &before); err != nil || status != http.StatusOK {
				t.Fatalf("%s: the SCONE presented first: %d %s %v", cs.Name, status, body, err)
			}
		}
		status, code, body, err := badhttp.Get(base+"/shop/cart", &cs)
		if err == nil {
			err = badhttp.Check(status, code, cs.HTTP)
		}
		if err == nil && cs.HTTP.OK() {
			var v pb.CartView
			if err = protojson.Unmarshal(body, &v); err == nil && v.Operations != cs.Operations {
				err = fmt.Errorf("accepted with %d operations, want %d", v.Operations, cs.Operations)
			}
		}
		if err != nil {
			t.Errorf("%s: %v", cs.Name, err)
		}
		resp, err := shopper.Get(base + "/shop/cart")
		if err != nil {
			t.Fatal(err)
		}
		var good pb.CartView
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := protojson.Unmarshal(b, &good); err != nil || good.Operations != 2 || len(good.Lines) != 1 || good.Lines[0].Quantity != 2 {
			t.Fatalf("after %s, the shopper's cart is %s (%v); want 2 operations, 2 books", cs.Name, b, err)
		}
	}
	if len(cases) < 30 {
		t.Errorf("only %d HTTP cases in the corpus", len(cases))
	}
}
