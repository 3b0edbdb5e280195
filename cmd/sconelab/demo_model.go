package main

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"

	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
)

// cartModel is what a session's state must be: the effect of its
// acknowledged operations, and nothing else. In client mode a call that
// fails leaves the client's SCONEs as they were, so a failed call has no
// effect at all.
type cartModel struct {
	items map[string]int32
	ops   uint64 // acknowledged changes: add, remove, checkout
}

func newCartModel() *cartModel { return &cartModel{items: map[string]int32{}} }

func (m *cartModel) clone() *cartModel { return &cartModel{items: maps.Clone(m.items), ops: m.ops} }

// opKind is one kind of shopper operation.
type opKind int

const (
	opAdd opKind = iota
	opRemove
	opGet
	opCheckout
)

var opNames = [...]string{"add", "remove", "get", "checkout"}

func (k opKind) String() string { return opNames[k] }

// op is one operation a session makes.
type op struct {
	kind     opKind
	isbn     string
	quantity int32
}

// nextOp draws a session's next operation. It takes the same number of
// draws from r whatever the model holds, so a seed gives the same sequence
// of draws even when calls fail at different moments.
func (m *cartModel) nextOp(r *rand.Rand) op {
	p, title, pick, q := r.IntN(100), r.IntN(len(shop.Catalog)), r.IntN(1000), int32(1+r.IntN(3))
	switch {
	case p < 45:
		return op{opAdd, shop.Catalog[title].Isbn, q}
	case p < 70:
		isbn := shop.Catalog[title].Isbn
		if held := slices.Sorted(maps.Keys(m.items)); len(held) > 0 && pick%10 < 7 {
			isbn = held[pick%len(held)] // mostly remove what is there
		}
		return op{opRemove, isbn, q}
	case p < 92:
		return op{kind: opGet}
	default:
		return op{kind: opCheckout}
	}
}

// String describes the operation for the narration.
func (o op) String() string {
	switch o.kind {
	case opAdd, opRemove:
		title := o.isbn
		if b := shop.Book(o.isbn); b != nil {
			title = b.Title
		}
		return fmt.Sprintf("%s %d × %q", o.kind, o.quantity, title)
	}
	return o.kind.String()
}

// expectError returns the status code the operation must fail with, by the
// rules of the shop, or codes.OK.
func (m *cartModel) expectError(o op) codes.Code {
	switch o.kind {
	case opAdd:
		if m.items[o.isbn]+o.quantity > shop.MaxPerTitle {
			return codes.FailedPrecondition
		}
	case opRemove:
		if m.items[o.isbn] < o.quantity {
			return codes.FailedPrecondition
		}
	case opCheckout:
		if len(m.items) == 0 {
			return codes.FailedPrecondition
		}
	}
	return codes.OK
}

// apply records an acknowledged operation.
func (m *cartModel) apply(o op) {
	switch o.kind {
	case opAdd:
		m.items[o.isbn] += o.quantity
		m.ops++
	case opRemove:
		if m.items[o.isbn] -= o.quantity; m.items[o.isbn] == 0 {
			delete(m.items, o.isbn)
		}
		m.ops++
	case opCheckout:
		clear(m.items)
		m.ops++
	}
}

// checkView compares a cart view with the model; "" means they agree.
func (m *cartModel) checkView(v *pb.CartView) string {
	got := map[string]int32{}
	var units int32
	for _, l := range v.GetLines() {
		got[l.GetBook().GetIsbn()] = l.GetQuantity()
		units += l.GetQuantity()
	}
	var problems []string
	if !maps.Equal(got, m.items) {
		problems = append(problems, fmt.Sprintf("cart %v, want %v", got, m.items))
	}
	if v.GetReserved() != units {
		problems = append(problems, fmt.Sprintf("inventory holds %d copies for %d in the cart", v.GetReserved(), units))
	}
	if v.GetOperations() != m.ops {
		problems = append(problems, fmt.Sprintf("gateway counted %d changes, want %d", v.GetOperations(), m.ops))
	}
	return strings.Join(problems, "; ")
}

// checkOrder compares an order with the cart the model had before checkout.
func (m *cartModel) checkOrder(o *pb.Order, before map[string]int32) string {
	got := map[string]int32{}
	for _, l := range o.GetLines() {
		got[l.GetBook().GetIsbn()] = l.GetQuantity()
	}
	if !maps.Equal(got, before) {
		return fmt.Sprintf("order %v, want the cart %v", got, before)
	}
	if o.GetOperations() != m.ops {
		return fmt.Sprintf("order says %d changes, want %d", o.GetOperations(), m.ops)
	}
	return ""
}
