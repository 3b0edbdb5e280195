package sconehttp_test

import (
	"context"
	"fmt"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"time"

	"connectrpc.com/connect"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/bookstorepb/bookstorepbconnect"
	"github.com/scone-project/scone/sconehttp"
)

// shopCart is the Connect gateway's state, a protobuf message in its SCONE.
var shopCart = scone.NewTyped(scone.ProtoCodec[*pb.CartSession]())

// shopGateway is an ordinary Connect handler of the bookstore's Gateway: it
// keeps the cart in the request's SCONE, nothing in memory.
type shopGateway struct {
	bookstorepbconnect.UnimplementedGatewayHandler
}

// AddItem puts copies of a book in the cart.
func (shopGateway) AddItem(ctx context.Context, req *connect.Request[pb.AddItemRequest]) (*connect.Response[pb.CartView], error) {
	c, ok, err := shopCart.Load(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		c = &pb.CartSession{Items: map[string]int32{}}
	}
	c.Items[req.Msg.Isbn] += req.Msg.Quantity
	if err := shopCart.Store(ctx, c); err != nil {
		return nil, err
	}
	return connect.NewResponse(&pb.CartView{Lines: shopLines(c)}), nil
}

// ListItems streams the cart. A streaming handler changes its state before
// its first message, whose flush sends the SCONE with the headers.
func (shopGateway) ListItems(ctx context.Context, _ *connect.Request[pb.GetCartRequest], stream *connect.ServerStream[pb.CartLine]) error {
	c, _, err := shopCart.Load(ctx)
	if err != nil {
		return err
	}
	for _, line := range shopLines(c) {
		if err := stream.Send(line); err != nil {
			return err
		}
	}
	return nil
}

// shopLines returns the lines of a cart, by ISBN.
func shopLines(c *pb.CartSession) []*pb.CartLine {
	var lines []*pb.CartLine
	for _, isbn := range slices.Sorted(maps.Keys(c.GetItems())) {
		lines = append(lines, &pb.CartLine{Book: &pb.Book{Isbn: isbn}, Quantity: c.Items[isbn]})
	}
	return lines
}

// A Connect handler behind the Middleware, and a connect-go client whose
// http.Client has a Transport: the client's cart, added to on replica A,
// is there on replica B once A has stopped. The same goes for the gRPC and
// gRPC-Web protocols (connect.WithGRPC, connect.WithGRPCWeb), and for a
// client that holds its SCONEs in a cookie jar instead.
func Example_connect() {
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		log.Fatal(err)
	}
	replica := func() *httptest.Server {
		sealer, err := scone.NewSealer(ring) // the replicas share the key ring
		if err != nil {
			log.Fatal(err)
		}
		path, h := bookstorepbconnect.NewGatewayHandler(shopGateway{})
		mux := http.NewServeMux()
		mux.Handle(path, sconehttp.Middleware(sealer, "gateway", sconehttp.WithScope(sconehttp.StaticScope(path)))(h))
		return httptest.NewServer(mux)
	}
	a, b := replica(), replica()
	defer b.Close()

	holder := scone.NewDict() // one holder for the two replicas: they serve one service
	base := &http.Transport{}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: sconehttp.NewTransport(base, sconehttp.WithHolder(holder))}

	add := func(url, isbn string, n int32) {
		gw := bookstorepbconnect.NewGatewayClient(client, url)
		resp, err := gw.AddItem(context.Background(), connect.NewRequest(&pb.AddItemRequest{Isbn: isbn, Quantity: n}))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("lines in the cart:", len(resp.Msg.Lines))
	}
	add(a.URL, "dune", 2)
	a.Close() // replica a is gone
	add(b.URL, "neuromancer", 1)

	stream, err := bookstorepbconnect.NewGatewayClient(client, b.URL).ListItems(context.Background(), connect.NewRequest(&pb.GetCartRequest{}))
	if err != nil {
		log.Fatal(err)
	}
	for stream.Receive() {
		fmt.Println("line:", stream.Msg().Book.GetIsbn(), stream.Msg().Quantity)
	}
	if err := stream.Close(); err != nil {
		log.Fatal(err)
	}
	for _, h := range holder.Headers() { // a SCONE per reply: two calls and a stream
		fmt.Println("held:", h.Service, h.Scope, "version", h.Version)
	}
	// Output:
	// lines in the cart: 1
	// lines in the cart: 2
	// line: dune 2
	// line: neuromancer 1
	// held: gateway /bookstore.v1.Gateway/ version 3
}
