package sconegrpc_test

import (
	"context"
	"testing"

	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
)

// TestThreeTiers runs a session through gateway → cart → inventory, where
// the gateway also calls inventory: every tier's state is entrusted to the
// client, scoped to the gateway, and comes back on the next call.
func TestThreeTiers(t *testing.T) {
	t.Parallel()
	d := deploy(t, newSealer(t), 2)
	c := newShopper(t, d)
	ctx := context.Background()

	v, err := c.AddItem(ctx, &pb.AddItemRequest{Isbn: dune, Quantity: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Lines) != 1 || v.Lines[0].Quantity != 2 || v.Reserved != 2 || v.Operations != 1 {
		t.Fatalf("after the first add: %v", v)
	}
	want := map[string]string{
		"bookstore.v1.Gateway":   gatewayScope,
		"bookstore.v1.Cart":      gatewayScope,
		"bookstore.v1.Inventory": gatewayScope,
	}
	if got := c.services(); !equalMaps(got, want) {
		t.Fatalf("client holds %v, want %v", got, want)
	}

	if _, err := c.AddItem(ctx, &pb.AddItemRequest{Isbn: neuromancer, Quantity: 1}); err != nil {
		t.Fatal(err)
	}
	v, err = c.RemoveItem(ctx, &pb.RemoveItemRequest{Isbn: dune, Quantity: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Lines) != 2 || v.Reserved != 2 || v.Operations != 3 {
		t.Fatalf("after add, add, remove: %v", v)
	}

	o, err := c.Checkout(ctx, &pb.CheckoutRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(o.Lines) != 2 || o.Operations != 4 || o.TotalCents != 1099+999 {
		t.Fatalf("order: %v", o)
	}
	// Checkout ended the cart's and inventory's sessions: dropped everywhere.
	if got := c.services(); len(got) != 1 || got["bookstore.v1.Gateway"] != gatewayScope {
		t.Fatalf("after checkout the client holds %v", got)
	}
	v, err = c.GetCart(ctx, &pb.GetCartRequest{})
	if err != nil || len(v.Lines) != 0 || v.Reserved != 0 || v.Operations != 4 {
		t.Fatalf("cart after checkout: %v, %v", v, err)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
