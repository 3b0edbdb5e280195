package shop

import (
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/sconehttp"
)

// HTTPScope is where the HTTP front lives, and the path of its cookies.
const HTTPScope = "/shop/"

//go:embed web/index.html
var indexHTML []byte

// HTTPHandler serves the gateway over HTTP/JSON under /shop/, with the same
// handlers as over gRPC, and a small HTML page at /shop/. Its state and its
// back ends' travel in cookies (scoped to /shop/) for browsers and curl, or
// in headers for a sconehttp.Transport or an HTTP relay (relay.NewHTTP):
//
//	GET    /shop/                      the HTML page
//	GET    /shop/books                 the catalog
//	GET    /shop/cart                  the cart
//	POST   /shop/cart/items            add: {"isbn": "...", "quantity": N}
//	DELETE /shop/cart/items/{isbn}     remove: ?quantity=N (default 1)
//	POST   /shop/checkout              the cart becomes an order
//
// The page and the catalog hold no state, so they are served without the
// SCONE middleware: they answer even when the cookies do not open (after a
// restart with another key file, say), and the page can show the error
// the cart gets, once.
func HTTPHandler(g *Gateway, sealer *scone.Sealer) http.Handler {
	return HTTPFront(g, sconehttp.Middleware(sealer, pb.Gateway_ServiceDesc.ServiceName,
		sconehttp.WithScope(sconehttp.StaticScope(HTTPScope))))
}

// HTTPFront is HTTPHandler with the stateful routes wrapped in hook, which
// keeps their state: sconehttp.Middleware in client and relay modes (as
// HTTPHandler), cluster.Node.Middleware in cluster mode. The handlers are
// the same in every mode; only hook differs.
func HTTPFront(g *Gateway, hook func(http.Handler) http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /shop/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(indexHTML)
	})
	mux.HandleFunc("GET /shop/books", func(w http.ResponseWriter, r *http.Request) {
		writeBooks(w)
	})
	stateful := http.NewServeMux()
	mux.Handle("/shop/", hook(stateful))
	stateful.HandleFunc("GET /shop/cart", func(w http.ResponseWriter, r *http.Request) {
		v, err := g.GetCart(r.Context(), &pb.GetCartRequest{})
		reply(w, v, err)
	})
	stateful.HandleFunc("POST /shop/cart/items", func(w http.ResponseWriter, r *http.Request) {
		var req pb.AddItemRequest
		if err := decodeJSON(r, &req); err != nil {
			writeProblem(w, http.StatusBadRequest, err.Error())
			return
		}
		v, err := g.AddItem(r.Context(), &req)
		reply(w, v, err)
	})
	stateful.HandleFunc("DELETE /shop/cart/items/{isbn}", func(w http.ResponseWriter, r *http.Request) {
		q := 1
		if s := r.URL.Query().Get("quantity"); s != "" {
			var err error
			if q, err = strconv.Atoi(s); err != nil {
				writeProblem(w, http.StatusBadRequest, "quantity must be a number")
				return
			}
		}
		v, err := g.RemoveItem(r.Context(), &pb.RemoveItemRequest{Isbn: r.PathValue("isbn"), Quantity: int32(q)})
		reply(w, v, err)
	})
	stateful.HandleFunc("POST /shop/checkout", func(w http.ResponseWriter, r *http.Request) {
		o, err := g.Checkout(r.Context(), &pb.CheckoutRequest{})
		reply(w, o, err)
	})
	return mux
}

func decodeJSON(r *http.Request, m proto.Message) error {
	var raw json.RawMessage
	if err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<16)).Decode(&raw); err != nil {
		return errors.New("the body must be a JSON object")
	}
	if err := protojson.Unmarshal(raw, m); err != nil {
		return errors.New("the body is not a valid request: " + err.Error())
	}
	return nil
}

// reply writes a handler's result, or its error with the matching status.
func reply(w http.ResponseWriter, m proto.Message, err error) {
	if err != nil {
		if c := scone.CodeOf(err); c != scone.CodeUnknown {
			sconehttp.WriteError(w, scone.NewError(c, status.Convert(err).Message()))
			return
		}
		st := status.Convert(err)
		writeProblem(w, httpStatus(st.Code()), st.Message())
		return
	}
	writeJSON(w, m)
}

// writeBooks writes the catalog as a JSON array.
func writeBooks(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	out := []byte("[")
	for i, b := range Catalog {
		if i > 0 {
			out = append(out, ',')
		}
		out, _ = protojson.MarshalOptions{}.MarshalAppend(out, b)
	}
	w.Write(append(out, "]\n"...))
}

// writeJSON writes m as JSON.
func writeJSON(w http.ResponseWriter, m proto.Message) {
	w.Header().Set("Content-Type", "application/json")
	out, err := protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(m)
	if err != nil {
		writeProblem(w, http.StatusInternalServerError, "encoding the reply")
		return
	}
	w.Write(append(out, '\n'))
}

func writeProblem(w http.ResponseWriter, code int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"title": http.StatusText(code), "status": code, "detail": detail})
}

// httpStatus maps the shop's gRPC errors to HTTP.
func httpStatus(c codes.Code) int {
	switch c {
	case codes.InvalidArgument:
		return http.StatusBadRequest
	case codes.NotFound:
		return http.StatusNotFound
	case codes.FailedPrecondition, codes.Aborted:
		return http.StatusConflict
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}
