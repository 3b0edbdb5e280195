package sconehttp_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/bookstorepb/bookstorepbconnect"
	"github.com/scone-project/scone/sconehttp"
)

// The Connect tests serve the bookstore's Gateway service with connect-go
// behind the Middleware, and call it with connect-go clients over each of
// the three protocols, holding the SCONEs in a Transport (the header
// carrier) or a cookie jar.

// connectCart is the state the Connect gateway keeps in its SCONE.
type connectCart struct {
	Items      map[string]int32 `json:"items,omitempty"`
	Operations uint64           `json:"operations"`
}

var connectCartState = scone.NewTyped(scone.JSONCodec[connectCart]())

// connectGateway is a bookstorepbconnect.GatewayHandler that keeps the
// cart in the request's SCONE and nothing in memory.
type connectGateway struct {
	bookstorepbconnect.UnimplementedGatewayHandler
	// changeLate makes ListItems change the state after its first message,
	// when the SCONE has already gone out with the response's headers.
	changeLate bool
	// failStream makes ListItems fail after changing the state, before
	// its first message.
	failStream bool
}

func (g connectGateway) AddItem(ctx context.Context, req *connect.Request[pb.AddItemRequest]) (*connect.Response[pb.CartView], error) {
	c, _, err := connectCartState.Load(ctx)
	if err != nil {
		return nil, err
	}
	if req.Msg.Quantity <= 0 {
		// A change made before a failure must not be kept.
		c.Operations += 100
		connectCartState.Store(ctx, c)
		return nil, connect.NewError(connect.CodeInvalidArgument, errors.New("quantity must be positive"))
	}
	if c.Items == nil {
		c.Items = map[string]int32{}
	}
	c.Items[req.Msg.Isbn] += req.Msg.Quantity
	c.Operations++
	if err := connectCartState.Store(ctx, c); err != nil {
		return nil, err
	}
	return connect.NewResponse(cartView(c)), nil
}

func (g connectGateway) GetCart(ctx context.Context, _ *connect.Request[pb.GetCartRequest]) (*connect.Response[pb.CartView], error) {
	c, _, err := connectCartState.Load(ctx)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(cartView(c)), nil
}

// Checkout ends the session.
func (g connectGateway) Checkout(ctx context.Context, _ *connect.Request[pb.CheckoutRequest]) (*connect.Response[pb.Order], error) {
	c, _, err := connectCartState.Load(ctx)
	if err != nil {
		return nil, err
	}
	st, _ := scone.FromContext(ctx)
	st.Drop()
	v := cartView(c)
	return connect.NewResponse(&pb.Order{Lines: v.Lines, TotalCents: v.TotalCents, Operations: c.Operations}), nil
}

// ListItems counts the listing as an operation of the session, and streams
// the cart's lines. The state changes before the first message: the
// Middleware seals it when that message is flushed, so the SCONE goes out
// with the response's headers.
func (g connectGateway) ListItems(ctx context.Context, _ *connect.Request[pb.GetCartRequest], stream *connect.ServerStream[pb.CartLine]) error {
	c, _, err := connectCartState.Load(ctx)
	if err != nil {
		return err
	}
	c.Operations++
	if !g.changeLate {
		if err := connectCartState.Store(ctx, c); err != nil {
			return err
		}
	}
	if g.failStream {
		return connect.NewError(connect.CodeUnavailable, errors.New("failing on purpose"))
	}
	for _, line := range cartView(c).Lines {
		if err := stream.Send(line); err != nil {
			return err
		}
		if g.changeLate {
			// Too late: the headers, and the SCONE, are gone. Store panics
			// (recovered into an error by connect.WithRecover).
			connectCartState.Store(ctx, c)
		}
	}
	return nil
}

// cartView renders a cart, its lines by ISBN.
func cartView(c connectCart) *pb.CartView {
	v := &pb.CartView{Operations: c.Operations}
	for _, isbn := range slices.Sorted(maps.Keys(c.Items)) {
		v.Lines = append(v.Lines, &pb.CartLine{Book: &pb.Book{Isbn: isbn}, Quantity: c.Items[isbn]})
	}
	return v
}

// recoverSCONE is the connect.WithRecover function of the tests: a SCONE
// error a handler panicked with (a change of its state after the SCONE went
// out) becomes the call's error.
func recoverSCONE(_ context.Context, _ connect.Spec, _ http.Header, p any) error {
	if err, ok := p.(error); ok && scone.CodeOf(err) != scone.CodeUnknown {
		return connect.NewError(connect.CodeInternal, err)
	}
	return connect.NewError(connect.CodeInternal, fmt.Errorf("panic: %v", p))
}

// connectServer serves g behind the Middleware of service "gateway", over
// HTTP/1.1 and unencrypted HTTP/2 (which the gRPC protocol needs), on
// 127.0.0.1. It is one server process: a restart is a new connectServer
// with a Sealer on the same key ring.
func connectServer(t testing.TB, ring *scone.KeyRing, g connectGateway) *httptest.Server {
	t.Helper()
	sealer, err := scone.NewSealer(ring)
	if err != nil {
		t.Fatal(err)
	}
	path, h := bookstorepbconnect.NewGatewayHandler(g, connect.WithRecover(recoverSCONE))
	mux := http.NewServeMux()
	mux.Handle(path, sconehttp.Middleware(sealer, "gateway", sconehttp.WithScope(sconehttp.StaticScope(path)))(h))
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// connectProtocols are the three protocols of a connect-go client.
var connectProtocols = []struct {
	name string
	opt  connect.ClientOption
}{
	{"connect", nil},
	{"grpc", connect.WithGRPC()},
	{"grpcweb", connect.WithGRPCWeb()},
}

// connectClient is a client of one session: its http.Client holds the
// session's SCONEs, in a Transport (header carrier) or a cookie jar.
type connectClient struct {
	http     *http.Client
	protocol connect.ClientOption
	holder   *scone.Dict // the Transport's; nil with cookies
}

func newConnectClient(t testing.TB, protocol connect.ClientOption, carrier string) *connectClient {
	t.Helper()
	base := &http.Transport{Protocols: new(http.Protocols)}
	if protocol == nil {
		base.Protocols.SetHTTP1(true)
	} else {
		base.Protocols.SetUnencryptedHTTP2(true) // gRPC needs HTTP/2; gRPC-Web takes it too
	}
	t.Cleanup(base.CloseIdleConnections)
	c := &connectClient{http: &http.Client{Transport: base}, protocol: protocol}
	switch carrier {
	case "header":
		c.holder = scone.NewDict() // one holder for every server: they serve one service
		c.http.Transport = sconehttp.NewTransport(base, sconehttp.WithHolder(c.holder))
	case "cookie":
		jar, err := cookiejar.New(nil)
		if err != nil {
			t.Fatal(err)
		}
		c.http.Jar = jar
	}
	return c
}

// to returns a Gateway client of the server at url.
func (c *connectClient) to(url string) bookstorepbconnect.GatewayClient {
	var opts []connect.ClientOption
	if c.protocol != nil {
		opts = append(opts, c.protocol)
	}
	return bookstorepbconnect.NewGatewayClient(c.http, url, opts...)
}

func connectAdd(t testing.TB, gw bookstorepbconnect.GatewayClient, isbn string, n int32) *pb.CartView {
	t.Helper()
	resp, err := gw.AddItem(context.Background(), connect.NewRequest(&pb.AddItemRequest{Isbn: isbn, Quantity: n}))
	if err != nil {
		t.Fatalf("AddItem: %v", err)
	}
	return resp.Msg
}

func getCart(t testing.TB, gw bookstorepbconnect.GatewayClient) *pb.CartView {
	t.Helper()
	resp, err := gw.GetCart(context.Background(), connect.NewRequest(&pb.GetCartRequest{}))
	if err != nil {
		t.Fatalf("GetCart: %v", err)
	}
	return resp.Msg
}

// listItems returns the lines ListItems streams, as "isbn×n", and the
// stream's error.
func listItems(gw bookstorepbconnect.GatewayClient) ([]string, error) {
	stream, err := gw.ListItems(context.Background(), connect.NewRequest(&pb.GetCartRequest{}))
	if err != nil {
		return nil, err
	}
	defer stream.Close()
	var lines []string
	for stream.Receive() {
		lines = append(lines, fmt.Sprintf("%s×%d", stream.Msg().Book.GetIsbn(), stream.Msg().Quantity))
	}
	return lines, stream.Err()
}

func newRing(t testing.TB) *scone.KeyRing {
	t.Helper()
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	return ring
}

// TestConnect: a Connect handler behind the Middleware keeps the session of
// a connect-go client over each protocol and carrier, for unary calls and
// server streams, across calls and across a server restart.
func TestConnect(t *testing.T) {
	t.Parallel()
	for _, p := range connectProtocols {
		for _, carrier := range []string{"header", "cookie"} {
			t.Run(p.name+"/"+carrier+"/unary", func(t *testing.T) {
				t.Parallel()
				ring := newRing(t)
				c := newConnectClient(t, p.opt, carrier)
				srv := connectServer(t, ring, connectGateway{})
				gw := c.to(srv.URL)
				connectAdd(t, gw, "dune", 2)
				if v := connectAdd(t, gw, "neuromancer", 1); v.Operations != 2 || len(v.Lines) != 2 {
					t.Fatalf("second call: %v", v)
				}
				srv.Close()
				srv = connectServer(t, ring, connectGateway{}) // a new process, the same keys
				gw = c.to(srv.URL)
				v := connectAdd(t, gw, "dune", 1)
				if v.Operations != 3 || len(v.Lines) != 2 || v.Lines[0].Quantity != 3 {
					t.Fatalf("after the restart: %v", v)
				}
				if c.holder != nil {
					if n, _ := c.holder.Len(); n != 1 {
						t.Errorf("holder has %d SCONEs, want 1", n)
					}
				}
				// Checkout ends the session: the holder forgets it.
				if _, err := gw.Checkout(context.Background(), connect.NewRequest(&pb.CheckoutRequest{})); err != nil {
					t.Fatal(err)
				}
				if v := getCart(t, gw); v.Operations != 0 || len(v.Lines) != 0 {
					t.Fatalf("after checkout: %v", v)
				}
			})
			t.Run(p.name+"/"+carrier+"/stream", func(t *testing.T) {
				t.Parallel()
				ring := newRing(t)
				c := newConnectClient(t, p.opt, carrier)
				srv := connectServer(t, ring, connectGateway{})
				gw := c.to(srv.URL)
				// A first stream, of an empty cart: no message, the SCONE
				// goes out with the end of the stream.
				if lines, err := listItems(gw); err != nil || len(lines) != 0 {
					t.Fatalf("first stream: %v, %v", lines, err)
				}
				connectAdd(t, gw, "dune", 2)
				for range 2 {
					if lines, err := listItems(gw); err != nil || !slices.Equal(lines, []string{"dune×2"}) {
						t.Fatalf("stream: %v, %v", lines, err)
					}
				}
				srv.Close()
				srv = connectServer(t, ring, connectGateway{})
				gw = c.to(srv.URL)
				if lines, err := listItems(gw); err != nil || !slices.Equal(lines, []string{"dune×2"}) {
					t.Fatalf("stream after the restart: %v, %v", lines, err)
				}
				// 1 AddItem and 4 streams, each counted.
				if v := getCart(t, gw); v.Operations != 5 {
					t.Fatalf("after the streams: %v", v)
				}
			})
		}
	}
}

// TestConnectLateChange: a server stream whose handler changes its state
// after its first message (when the SCONE has gone out with the headers)
// fails with an error that says so, and the session keeps the state it
// had, over each protocol.
func TestConnectLateChange(t *testing.T) {
	t.Parallel()
	for _, p := range connectProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			ring := newRing(t)
			c := newConnectClient(t, p.opt, "header")
			gw := c.to(connectServer(t, ring, connectGateway{}).URL)
			connectAdd(t, gw, "dune", 2)
			late := c.to(connectServer(t, ring, connectGateway{changeLate: true}).URL)
			lines, err := listItems(late)
			if connect.CodeOf(err) != connect.CodeInternal || !strings.Contains(err.Error(), "state changed after the hook sealed it") {
				t.Fatalf("a change after the first message: %v, %v", lines, err)
			}
			if v := getCart(t, gw); v.Operations != 1 {
				t.Fatalf("after the failed stream: %v", v)
			}
		})
	}
}

// TestConnectFailedCallKeepsState: a unary call that fails after changing
// the state leaves the holder's SCONE as it was, over each protocol and
// carrier.
func TestConnectFailedCallKeepsState(t *testing.T) {
	t.Parallel()
	for _, p := range connectProtocols {
		for _, carrier := range []string{"header", "cookie"} {
			t.Run(p.name+"/"+carrier, func(t *testing.T) {
				t.Parallel()
				c := newConnectClient(t, p.opt, carrier)
				gw := c.to(connectServer(t, newRing(t), connectGateway{}).URL)
				connectAdd(t, gw, "dune", 2)
				_, err := gw.AddItem(context.Background(), connect.NewRequest(&pb.AddItemRequest{Isbn: "dune"}))
				if connect.CodeOf(err) != connect.CodeInvalidArgument {
					t.Fatalf("AddItem of 0: %v", err)
				}
				if v := getCart(t, gw); v.Operations != 1 {
					t.Fatalf("after the failed call: %v", v)
				}
			})
		}
	}
}

// TestConnectFailedStream: a server stream that fails before its first
// message, after changing the state, leaves the holder's SCONE as it was
// over gRPC and gRPC-Web, whose status the Middleware reads in the
// headers. The Connect protocol puts the failure in the stream's last
// message, which the Middleware does not read: there the change is kept,
// as the package doc says.
func TestConnectFailedStream(t *testing.T) {
	t.Parallel()
	for _, p := range connectProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			ring := newRing(t)
			c := newConnectClient(t, p.opt, "header")
			gw := c.to(connectServer(t, ring, connectGateway{}).URL)
			connectAdd(t, gw, "dune", 2)
			failing := c.to(connectServer(t, ring, connectGateway{failStream: true}).URL)
			if _, err := listItems(failing); connect.CodeOf(err) != connect.CodeUnavailable {
				t.Fatalf("a failing stream: %v", err)
			}
			want := uint64(1)
			if p.opt == nil {
				want = 2 // the Connect protocol: the change before the failure is kept
			}
			if v := getCart(t, gw); v.Operations != want {
				t.Fatalf("after the failed stream: %d operations, want %d", v.Operations, want)
			}
		})
	}
}

// TestConnectRefused: a SCONE that does not open fails the call, over each
// protocol, with the connect code its HTTP status maps to (401:
// Unauthenticated); a cookie holder's next call starts a new session.
func TestConnectRefused(t *testing.T) {
	t.Parallel()
	for _, p := range connectProtocols {
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			c := newConnectClient(t, p.opt, "cookie")
			srv := connectServer(t, newRing(t), connectGateway{})
			gw := c.to(srv.URL)
			connectAdd(t, gw, "dune", 2)
			u, _ := url.Parse(srv.URL + bookstorepbconnect.GatewayGetCartProcedure)
			cookies := c.http.Jar.Cookies(u)
			if len(cookies) != 1 {
				t.Fatalf("cookies: %v", cookies)
			}
			tok, err := scone.DecodeText(cookies[0].Value)
			if err != nil {
				t.Fatal(err)
			}
			tok[len(tok)-1] ^= 1
			c.http.Jar.SetCookies(u, []*http.Cookie{{Name: cookies[0].Name, Value: scone.EncodeText(tok), Path: "/bookstore.v1.Gateway/"}})

			_, err = gw.GetCart(context.Background(), connect.NewRequest(&pb.GetCartRequest{}))
			if connect.CodeOf(err) != connect.CodeUnauthenticated {
				t.Fatalf("a tampered SCONE: %v", err)
			}
			if v := connectAdd(t, gw, "dune", 1); v.Operations != 1 {
				t.Fatalf("after the refusal: %v", v)
			}
		})
	}
}
