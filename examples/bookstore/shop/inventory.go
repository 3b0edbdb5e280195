package shop

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
)

// Inventory serves the catalog and holds a session's reservations in its
// SCONE.
type Inventory struct {
	pb.UnimplementedInventoryServer
}

var inventoryState = scone.NewTyped(scone.ProtoCodec[*pb.InventorySession]())

func loadInventory(ctx context.Context) (*pb.InventorySession, error) {
	s, ok, err := inventoryState.Load(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		s = &pb.InventorySession{}
	}
	if s.Held == nil {
		s.Held = map[string]int32{}
	}
	return s, nil
}

// saveInventory stores the reservations, or ends the session when none are
// left.
func saveInventory(ctx context.Context, s *pb.InventorySession) error {
	if len(s.Held) == 0 {
		if st, ok := scone.FromContext(ctx); ok {
			st.Drop()
		}
		return nil
	}
	return inventoryState.Store(ctx, s)
}

// Lookup implements pb.InventoryServer.
func (Inventory) Lookup(_ context.Context, req *pb.LookupRequest) (*pb.Book, error) {
	b := Book(req.GetIsbn())
	if b == nil {
		return nil, status.Errorf(codes.NotFound, "no book with ISBN %q", req.GetIsbn())
	}
	return b, nil
}

// Reserve implements pb.InventoryServer.
func (Inventory) Reserve(ctx context.Context, req *pb.Reservation) (*pb.Reservations, error) {
	if err := checkChange(req.GetIsbn(), req.GetQuantity()); err != nil {
		return nil, err
	}
	s, err := loadInventory(ctx)
	if err != nil {
		return nil, err
	}
	if s.Held[req.Isbn]+req.Quantity > MaxPerTitle {
		return nil, status.Errorf(codes.FailedPrecondition,
			"only %d copies of a title per session: %d held", MaxPerTitle, s.Held[req.Isbn])
	}
	s.Held[req.Isbn] += req.Quantity
	if err := saveInventory(ctx, s); err != nil {
		return nil, err
	}
	return &pb.Reservations{Items: items(s.Held)}, nil
}

// Release implements pb.InventoryServer.
func (Inventory) Release(ctx context.Context, req *pb.Reservation) (*pb.Reservations, error) {
	if err := checkChange(req.GetIsbn(), req.GetQuantity()); err != nil {
		return nil, err
	}
	s, err := loadInventory(ctx)
	if err != nil {
		return nil, err
	}
	if s.Held[req.Isbn] < req.Quantity {
		return nil, status.Errorf(codes.FailedPrecondition,
			"releasing %d copies, %d held", req.Quantity, s.Held[req.Isbn])
	}
	s.Held[req.Isbn] -= req.Quantity
	if s.Held[req.Isbn] == 0 {
		delete(s.Held, req.Isbn)
	}
	if err := saveInventory(ctx, s); err != nil {
		return nil, err
	}
	return &pb.Reservations{Items: items(s.Held)}, nil
}

// Held implements pb.InventoryServer.
func (Inventory) Held(ctx context.Context, _ *pb.HeldRequest) (*pb.Reservations, error) {
	s, err := loadInventory(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.Reservations{Items: items(s.Held)}, nil
}

func checkChange(isbn string, quantity int32) error {
	if Book(isbn) == nil {
		return status.Errorf(codes.NotFound, "no book with ISBN %q", isbn)
	}
	if quantity < 1 || quantity > MaxPerTitle {
		return status.Error(codes.InvalidArgument, fmt.Sprintf("quantity must be 1 to %d", MaxPerTitle))
	}
	return nil
}
