package shop

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
)

// Gateway is the front end. It counts a session's cart changes in its own
// SCONE and calls Cart and Inventory with the request's context, so their
// SCONEs travel through it to the client and back.
type Gateway struct {
	pb.UnimplementedGatewayServer
	Cart      pb.CartClient
	Inventory pb.InventoryClient
}

var gatewayState = scone.NewTyped(scone.ProtoCodec[*pb.GatewaySession]())

// count records one cart change in the gateway's state.
func count(ctx context.Context, op string) (uint64, error) {
	s, ok, err := gatewayState.Load(ctx)
	if err != nil {
		return 0, err
	}
	if !ok {
		s = &pb.GatewaySession{}
	}
	s.Operations++
	s.LastOperation = op
	return s.Operations, gatewayState.Store(ctx, s)
}

func operations(ctx context.Context) (uint64, error) {
	s, _, err := gatewayState.Load(ctx)
	return s.GetOperations(), err
}

// AddItem implements pb.GatewayServer.
func (g *Gateway) AddItem(ctx context.Context, req *pb.AddItemRequest) (*pb.CartView, error) {
	c, err := g.Cart.Add(ctx, &pb.CartChange{Isbn: req.GetIsbn(), Quantity: req.GetQuantity()})
	if err != nil {
		return nil, err
	}
	ops, err := count(ctx, "add")
	if err != nil {
		return nil, err
	}
	return g.view(ctx, c, ops)
}

// RemoveItem implements pb.GatewayServer.
func (g *Gateway) RemoveItem(ctx context.Context, req *pb.RemoveItemRequest) (*pb.CartView, error) {
	c, err := g.Cart.Remove(ctx, &pb.CartChange{Isbn: req.GetIsbn(), Quantity: req.GetQuantity()})
	if err != nil {
		return nil, err
	}
	ops, err := count(ctx, "remove")
	if err != nil {
		return nil, err
	}
	return g.view(ctx, c, ops)
}

// GetCart implements pb.GatewayServer.
func (g *Gateway) GetCart(ctx context.Context, _ *pb.GetCartRequest) (*pb.CartView, error) {
	c, err := g.Cart.Get(ctx, &pb.CartGet{})
	if err != nil {
		return nil, err
	}
	ops, err := operations(ctx)
	if err != nil {
		return nil, err
	}
	return g.view(ctx, c, ops)
}

// Checkout implements pb.GatewayServer: the cart becomes an order, and the
// cart's and inventory's sessions end.
func (g *Gateway) Checkout(ctx context.Context, _ *pb.CheckoutRequest) (*pb.Order, error) {
	c, err := g.Cart.Get(ctx, &pb.CartGet{})
	if err != nil {
		return nil, err
	}
	if len(c.Items) == 0 {
		return nil, status.Error(codes.FailedPrecondition, "the cart is empty")
	}
	if _, err := g.Cart.Clear(ctx, &pb.CartGet{}); err != nil {
		return nil, err
	}
	ops, err := count(ctx, "checkout")
	if err != nil {
		return nil, err
	}
	lines, total := linesOf(c)
	return &pb.Order{Lines: lines, TotalCents: total, Operations: ops}, nil
}

// ListItems implements pb.GatewayServer, streaming one line per title.
func (g *Gateway) ListItems(_ *pb.GetCartRequest, stream grpc.ServerStreamingServer[pb.CartLine]) error {
	c, err := g.Cart.Get(stream.Context(), &pb.CartGet{})
	if err != nil {
		return err
	}
	lines, _ := linesOf(c)
	for _, l := range lines {
		if err := stream.Send(l); err != nil {
			return err
		}
	}
	return nil
}

// view builds the shopper's view of a cart, with what inventory holds.
func (g *Gateway) view(ctx context.Context, c *pb.CartContents, ops uint64) (*pb.CartView, error) {
	held, err := g.Inventory.Held(ctx, &pb.HeldRequest{})
	if err != nil {
		return nil, err
	}
	v := &pb.CartView{Operations: ops}
	v.Lines, v.TotalCents = linesOf(c)
	for _, it := range held.Items {
		v.Reserved += it.Quantity
	}
	return v, nil
}

func linesOf(c *pb.CartContents) ([]*pb.CartLine, int64) {
	lines := make([]*pb.CartLine, 0, len(c.Items))
	var total int64
	for _, it := range c.Items {
		b := Book(it.Isbn)
		if b == nil {
			b = &pb.Book{Isbn: it.Isbn, Title: "(not in the catalog)"}
		}
		lines = append(lines, &pb.CartLine{Book: b, Quantity: it.Quantity})
		total += b.PriceCents * int64(it.Quantity)
	}
	return lines, total
}
