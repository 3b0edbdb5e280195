package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/sconegrpc"
	"github.com/scone-project/scone/sconehttp"
)

// shopper is how sessions reach the shop: over gRPC or over HTTP. call
// makes one operation and returns the cart view (or, for a checkout, the
// order), the replica that served it, and any error as a gRPC status.
type shopper interface {
	call(ctx context.Context, o op) (*pb.CartView, *pb.Order, string, error)
}

// holderOf gives the SCONE holder of the session a call is made for.
func holderOf(ctx context.Context) scone.Holder { return ctx.Value(sessionKey{}).(*session).dict }

// grpcShopper calls the gateway replicas round-robin over gRPC.
type grpcShopper struct {
	gw    pb.GatewayClient
	names map[string]string // replica address → name
}

func (g *grpcShopper) call(ctx context.Context, o op) (*pb.CartView, *pb.Order, string, error) {
	var p peer.Peer
	var view *pb.CartView
	var order *pb.Order
	var err error
	switch o.kind {
	case opAdd:
		view, err = g.gw.AddItem(ctx, &pb.AddItemRequest{Isbn: o.isbn, Quantity: o.quantity}, grpc.Peer(&p))
	case opRemove:
		view, err = g.gw.RemoveItem(ctx, &pb.RemoveItemRequest{Isbn: o.isbn, Quantity: o.quantity}, grpc.Peer(&p))
	case opGet:
		view, err = g.gw.GetCart(ctx, &pb.GetCartRequest{}, grpc.Peer(&p))
	case opCheckout:
		order, err = g.gw.Checkout(ctx, &pb.CheckoutRequest{}, grpc.Peer(&p))
	}
	var served string
	if p.Addr != nil {
		served = g.names[p.Addr.String()]
	}
	return view, order, served, err
}

// httpShopper calls HTTP fronts round-robin: the gateway replicas' with a
// sconehttp.Transport holding each session's SCONEs (client mode), or the
// relays' or cluster nodes' with a plain client. A call whose context names
// its session in scone-client metadata (as the gRPC shoppers' do) names it
// in a Scone-Client header.
type httpShopper struct {
	client  *http.Client
	targets []httpTarget
	next    atomic.Uint64
	downTil []atomic.Int64 // per target: skipped before this (unix ns), after it refused a connection
}

// httpTarget is an HTTP front the shoppers call.
type httpTarget struct{ name, addr string }

func newHTTPShopper(targets []httpTarget, holds bool) *httpShopper {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxIdleConnsPerHost = 256
	h := &httpShopper{client: &http.Client{Transport: base}, targets: targets, downTil: make([]atomic.Int64, len(targets))}
	if holds {
		h.client.Transport = sconehttp.NewTransport(base, sconehttp.WithHolderFromContext(holderOf))
	}
	return h
}

func (h *httpShopper) call(ctx context.Context, o op) (*pb.CartView, *pb.Order, string, error) {
	i := h.pick()
	r := h.targets[i]
	base := "http://" + r.addr + shop.HTTPScope
	var req *http.Request
	var err error
	switch o.kind {
	case opAdd:
		body := fmt.Sprintf(`{"isbn":%q,"quantity":%d}`, o.isbn, o.quantity)
		req, err = http.NewRequestWithContext(ctx, "POST", base+"cart/items", bytes.NewBufferString(body))
	case opRemove:
		req, err = http.NewRequestWithContext(ctx, "DELETE", base+"cart/items/"+o.isbn+"?quantity="+strconv.Itoa(int(o.quantity)), nil)
	case opGet:
		req, err = http.NewRequestWithContext(ctx, "GET", base+"cart", nil)
	case opCheckout:
		req, err = http.NewRequestWithContext(ctx, "POST", base+"checkout", nil)
	}
	if err != nil {
		return nil, nil, r.name, err
	}
	if v := metadata.ValueFromOutgoingContext(ctx, "scone-client"); len(v) > 0 {
		req.Header.Set("Scone-Client", v[0])
	}
	resp, err := h.client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			// Down: skip it for a while, as a gRPC balancer does.
			h.downTil[i].Store(time.Now().Add(300 * time.Millisecond).UnixNano())
		}
		return nil, nil, r.name, transportStatus(ctx, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		if resp.StatusCode == http.StatusOK {
			// The state came with the headers and is kept: acknowledged,
			// but the body with the view was lost.
			return nil, nil, r.name, errBodyLost
		}
		return nil, nil, r.name, transportStatus(ctx, err)
	}
	if resp.StatusCode != http.StatusOK {
		msg := fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
		if c := sconehttp.ResponseCode(resp); c != scone.CodeUnknown {
			// The status a gRPC call refused with c gets, its code in detail.
			return nil, nil, r.name, sconegrpc.Status(scone.NewError(c, msg)).Err()
		}
		return nil, nil, r.name, status.Error(httpToGRPC(resp), msg)
	}
	var m proto.Message
	var view *pb.CartView
	var order *pb.Order
	if o.kind == opCheckout {
		order = &pb.Order{}
		m = order
	} else {
		view = &pb.CartView{}
		m = view
	}
	if err := protojson.Unmarshal(body, m); err != nil {
		return nil, nil, r.name, status.Error(codes.Internal, "reply is not JSON of the shop: "+err.Error())
	}
	return view, order, r.name, nil
}

// pick returns the next target round-robin, skipping those that lately
// refused a connection unless all did.
func (h *httpShopper) pick() int {
	n := uint64(len(h.targets))
	start := h.next.Add(1)
	now := time.Now().UnixNano()
	for j := range n {
		if i := int((start + j) % n); h.downTil[i].Load() <= now {
			return i
		}
	}
	return int(start % n)
}

// errBodyLost is a call whose response headers arrived (with its SCONEs,
// which the holder keeps) but whose body did not.
var errBodyLost = errors.New("the response's body was lost after its headers")

// transportStatus turns a failed HTTP exchange into the status a gRPC call
// would have failed with: the replica was unreachable or went away.
func transportStatus(ctx context.Context, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case scone.CodeOf(err) != scone.CodeUnknown:
		return sconegrpc.Status(err).Err()
	}
	return status.Error(codes.Unavailable, err.Error())
}

// httpToGRPC maps the shop's HTTP statuses back to the gRPC codes the model
// speaks; a refused SCONE keeps its own code.
func httpToGRPC(resp *http.Response) codes.Code {
	if c := sconehttp.ResponseCode(resp); c != scone.CodeUnknown {
		return sconegrpc.GRPCCode(c)
	}
	switch resp.StatusCode {
	case http.StatusBadRequest:
		return codes.InvalidArgument
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusConflict:
		return codes.FailedPrecondition
	case http.StatusServiceUnavailable, http.StatusBadGateway:
		return codes.Unavailable
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	}
	return codes.Unknown
}
