package sconegrpc_test

import (
	"context"
	"slices"
	"testing"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/hook"
)

// TestSCONERecordsWhereAndWhat: every SCONE the hook seals records the
// endpoint that served the call (its local address) and the operation with
// its outcome: the patent's network endpoint ID and status of the current
// operation, sealed, for `scone inspect --keys` and the web view.
func TestSCONERecordsWhereAndWhat(t *testing.T) {
	t.Parallel()
	s := newSealer(t)
	d := deploy(t, s, 1)
	sh := newShopper(t, d)
	ctx := context.Background()
	if _, err := sh.AddItem(ctx, &pb.AddItemRequest{Isbn: dune, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	// The inventory's last operation is Held: the gateway's view of the
	// cart reads it after the cart's Add reserved the book.
	want := map[string]struct{ endpoint, status string }{
		"bookstore.v1.Gateway":   {d.Addrs(shop.RoleGateway)[0], "/bookstore.v1.Gateway/AddItem: ok"},
		"bookstore.v1.Cart":      {d.Addrs(shop.RoleCart)[0], "/bookstore.v1.Cart/Add: ok"},
		"bookstore.v1.Inventory": {d.Addrs(shop.RoleInventory)[0], "/bookstore.v1.Inventory/Held: ok"},
	}
	var seen []string
	for _, tok := range sh.dict.Tokens() {
		h, err := scone.ParseHeader(tok)
		if err != nil {
			t.Fatal(err)
		}
		var sc scone.SCONE
		if _, err := hook.Open(s, ctx, &sc, tok, scone.Expect{Service: h.Service}); err != nil {
			t.Fatal(err)
		}
		w, ok := want[h.Service]
		if !ok {
			continue
		}
		seen = append(seen, h.Service)
		if sc.Endpoint != w.endpoint || sc.Status != w.status {
			t.Errorf("%s: endpoint %q, status %q; want %q, %q", h.Service, sc.Endpoint, sc.Status, w.endpoint, w.status)
		}
	}
	slices.Sort(seen)
	if len(seen) != 3 {
		t.Fatalf("SCONEs of %v, want the three tiers'", seen)
	}
}
