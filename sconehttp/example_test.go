package sconehttp_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/test/bufconn"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/sconehttp"
)

// Cart is a handler's own state type; the SCONE carries it as JSON.
type Cart struct{ Items []string }

var cart = scone.NewTyped(scone.JSONCodec[Cart]())

// addItem is an ordinary handler: it keeps the cart in the request's SCONE,
// nothing in memory.
func addItem(w http.ResponseWriter, r *http.Request) {
	c, _, err := cart.Load(r.Context())
	if err != nil {
		sconehttp.WriteError(w, err)
		return
	}
	item, _ := io.ReadAll(r.Body)
	c.Items = append(c.Items, string(item))
	if err := cart.Store(r.Context(), c); err != nil {
		sconehttp.WriteError(w, err)
		return
	}
	fmt.Fprint(w, c.Items)
}

// The three lines of the integration: a Sealer with the service's keys, the
// Middleware around the handler on every replica, a Transport in the
// client. The client's cart, added to on replica A, is there on replica B
// once A has stopped.
func Example() {
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring) // 1. the replicas share the key ring
	if err != nil {
		log.Fatal(err)
	}

	// Two replicas, a and b, each with the Middleware.
	mux := http.NewServeMux()
	hook := sconehttp.Middleware(sealer, "cart", sconehttp.WithScope(sconehttp.StaticScope("/cart/"))) // 2. the server hook
	mux.Handle("/cart/", hook(http.HandlerFunc(addItem)))
	network := newMemNet()
	a, b := network.serve("a:80", mux), network.serve("b:80", mux)
	defer a.Close()
	defer b.Close()

	// The client, with a Transport: its holder keeps the SCONEs. One holder
	// for the two hosts: they serve one service.
	holder := scone.NewDict()
	base := &http.Transport{DialContext: network.dial}
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: sconehttp.NewTransport(base, sconehttp.WithHolder(holder))} // 3. the client hook

	fmt.Println("replica a:", post(client, "http://a/cart/add", "dune"))
	a.Close() // replica a is gone
	fmt.Println("replica b:", post(client, "http://b/cart/add", "neuromancer"))
	for _, h := range holder.Headers() {
		fmt.Println("held:", h.Service, h.Scope, "version", h.Version)
	}
	// Output:
	// replica a: [dune]
	// replica b: [dune neuromancer]
	// held: cart /cart/ version 2
}

// post posts body to url and returns the response's body.
func post(c *http.Client, url, body string) string {
	resp, err := c.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	return string(b)
}

// memNet is an in-memory network of HTTP servers, by address.
type memNet map[string]*bufconn.Listener

func newMemNet() memNet { return memNet{} }

// serve serves h at addr.
func (n memNet) serve(addr string, h http.Handler) *http.Server {
	lis := bufconn.Listen(1 << 16)
	n[addr] = lis
	srv := &http.Server{Handler: h}
	go srv.Serve(lis)
	return srv
}

// dial connects to the server at addr: the DialContext of an http.Transport.
func (n memNet) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	lis, ok := n[addr]
	if !ok {
		return nil, fmt.Errorf("no server at %s", addr)
	}
	return lis.DialContext(ctx)
}
