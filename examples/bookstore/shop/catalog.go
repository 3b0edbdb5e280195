// Package shop implements the three services of the bookstore example:
// Gateway (the front end), Cart and Inventory (back ends). None keeps any
// per-client state in memory: each keeps its state for a session in a SCONE
// through scone.Typed, so any replica of any tier serves any call.
package shop

import (
	"slices"

	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
)

// MaxPerTitle is how many copies of one title a session may reserve.
const MaxPerTitle = 5

// Catalog is the store's fixed list of books, in ISBN order. It is code,
// not state: every replica has the same.
var Catalog = []*pb.Book{
	{Isbn: "9780262510875", Title: "Structure and Interpretation of Computer Programs", PriceCents: 5500},
	{Isbn: "9780131103627", Title: "The C Programming Language", PriceCents: 6700},
	{Isbn: "9780201633610", Title: "Design Patterns", PriceCents: 5400},
	{Isbn: "9780321125217", Title: "Domain-Driven Design", PriceCents: 6000},
	{Isbn: "9780441013593", Title: "Dune", PriceCents: 1099},
	{Isbn: "9780441569595", Title: "Neuromancer", PriceCents: 999},
	{Isbn: "9781449373320", Title: "Designing Data-Intensive Applications", PriceCents: 4999},
	{Isbn: "9780134190440", Title: "The Go Programming Language", PriceCents: 4200},
}

// Book returns the catalog's book with the given ISBN, or nil.
func Book(isbn string) *pb.Book {
	i := slices.IndexFunc(Catalog, func(b *pb.Book) bool { return b.Isbn == isbn })
	if i < 0 {
		return nil
	}
	return Catalog[i]
}

// items lists a map of quantities as items sorted by ISBN.
func items(m map[string]int32) []*pb.Item {
	out := make([]*pb.Item, 0, len(m))
	for isbn, q := range m {
		out = append(out, &pb.Item{Isbn: isbn, Quantity: q})
	}
	slices.SortFunc(out, func(a, b *pb.Item) int {
		if a.Isbn < b.Isbn {
			return -1
		}
		if a.Isbn > b.Isbn {
			return 1
		}
		return 0
	})
	return out
}
