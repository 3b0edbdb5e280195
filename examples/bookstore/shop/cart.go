package shop

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
)

// Cart keeps a session's cart in its SCONE and reserves every copy in the
// cart through Inventory, its own back end.
type Cart struct {
	pb.UnimplementedCartServer
	Inventory pb.InventoryClient
}

var cartState = scone.NewTyped(scone.ProtoCodec[*pb.CartSession]())

func loadCart(ctx context.Context) (*pb.CartSession, error) {
	s, ok, err := cartState.Load(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		s = &pb.CartSession{}
	}
	if s.Items == nil {
		s.Items = map[string]int32{}
	}
	return s, nil
}

// Add implements pb.CartServer: it reserves the copies, then adds them.
func (c *Cart) Add(ctx context.Context, req *pb.CartChange) (*pb.CartContents, error) {
	s, err := loadCart(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := c.Inventory.Reserve(ctx, &pb.Reservation{Isbn: req.GetIsbn(), Quantity: req.GetQuantity()}); err != nil {
		return nil, err
	}
	s.Items[req.Isbn] += req.Quantity
	if err := cartState.Store(ctx, s); err != nil {
		return nil, err
	}
	return &pb.CartContents{Items: items(s.Items)}, nil
}

// Remove implements pb.CartServer: it removes the copies and releases them.
func (c *Cart) Remove(ctx context.Context, req *pb.CartChange) (*pb.CartContents, error) {
	s, err := loadCart(ctx)
	if err != nil {
		return nil, err
	}
	if q := req.GetQuantity(); q < 1 || s.Items[req.GetIsbn()] < q {
		return nil, status.Errorf(codes.FailedPrecondition,
			"removing %d copies of %q, %d in the cart", q, req.GetIsbn(), s.Items[req.GetIsbn()])
	}
	if _, err := c.Inventory.Release(ctx, &pb.Reservation{Isbn: req.Isbn, Quantity: req.Quantity}); err != nil {
		return nil, err
	}
	s.Items[req.Isbn] -= req.Quantity
	if s.Items[req.Isbn] == 0 {
		delete(s.Items, req.Isbn)
	}
	if err := cartState.Store(ctx, s); err != nil {
		return nil, err
	}
	return &pb.CartContents{Items: items(s.Items)}, nil
}

// Get implements pb.CartServer.
func (c *Cart) Get(ctx context.Context, _ *pb.CartGet) (*pb.CartContents, error) {
	s, err := loadCart(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.CartContents{Items: items(s.Items)}, nil
}

// Clear implements pb.CartServer: it releases every copy and ends the
// cart's session.
func (c *Cart) Clear(ctx context.Context, _ *pb.CartGet) (*pb.CartContents, error) {
	s, err := loadCart(ctx)
	if err != nil {
		return nil, err
	}
	for _, it := range items(s.Items) {
		if _, err := c.Inventory.Release(ctx, &pb.Reservation{Isbn: it.Isbn, Quantity: it.Quantity}); err != nil {
			return nil, err
		}
	}
	if st, ok := scone.FromContext(ctx); ok {
		st.Drop()
	}
	return &pb.CartContents{}, nil
}
