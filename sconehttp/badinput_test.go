package sconehttp_test

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/badinput"
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
			v, status, _, err := getCart(base, badinput.Case{Carrier: badinput.Envelope, Payloads: [][]byte{b}})
			if err != nil || status != http.StatusOK {
				t.Fatalf("%s: the SCONE presented first: %d %v %v", cs.Name, status, v, err)
			}
		}
		v, status, code, err := getCart(base, cs)
		switch {
		case err != nil:
			t.Errorf("%s: %v", cs.Name, err)
		case strconv.Itoa(status) != cs.HTTP.Status:
			t.Errorf("%s: status %d, want %s", cs.Name, status, cs.HTTP.Status)
		case cs.HTTP.OK() && v.Operations != cs.Operations:
			t.Errorf("%s: accepted with %d operations, want %d", cs.Name, v.Operations, cs.Operations)
		case !cs.HTTP.OK() && cs.HTTP.Code != "" && code != cs.HTTP.Code:
			t.Errorf("%s: Scone-Error %q, want %s", cs.Name, code, cs.HTTP.Code)
		case !cs.HTTP.OK() && cs.HTTP.Code != "":
			if c, ok := scone.ParseCode(cs.HTTP.Code); !ok || strconv.Itoa(sconehttp.HTTPStatus(c)) != cs.HTTP.Status {
				t.Errorf("%s: the manifest says %s for %s, which maps to %d", cs.Name, cs.HTTP.Status, cs.HTTP.Code, sconehttp.HTTPStatus(c))
			}
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

// getCart gets the cart with the case's payloads on its carrier, and
// returns the cart (on 200), the status and the Scone-Error header.
func getCart(base string, cs badinput.Case) (v *pb.CartView, status int, code string, err error) {
	req, err := http.NewRequest(http.MethodGet, base+"/shop/cart", nil)
	if err != nil {
		return nil, 0, "", err
	}
	switch cs.Carrier {
	case badinput.Envelope:
		texts := make([]string, len(cs.Payloads))
		for i, p := range cs.Payloads {
			texts[i] = scone.EncodeText(p)
		}
		req.Header.Set(sconehttp.HeaderSCONE, strings.Join(texts, ","))
	case badinput.Header:
		for _, p := range cs.Payloads {
			req.Header.Add(sconehttp.HeaderSCONE, string(p))
		}
	case badinput.Cookie:
		for _, p := range cs.Payloads {
			req.Header.Add("Cookie", string(p))
		}
	default:
		return nil, 0, "", fmt.Errorf("carrier %q is not for HTTP", cs.Carrier)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, 0, "", err
	}
	if resp.StatusCode == http.StatusOK {
		v = &pb.CartView{}
		if err := protojson.Unmarshal(b, v); err != nil {
			return nil, 0, "", fmt.Errorf("cart %s: %w", b, err)
		}
	}
	return v, resp.StatusCode, resp.Header.Get(sconehttp.ErrorHeader), nil
}
