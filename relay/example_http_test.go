package relay_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/test/bufconn"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/relay"
	"github.com/scone-project/scone/sconehttp"
)

// shelf is an ordinary HTTP handler whose per-client state, a list of
// books, lives in a SCONE: the same handler whoever holds the SCONE.
var shelf = scone.NewTyped(scone.JSONCodec[[]string]())

func addBook(w http.ResponseWriter, r *http.Request) {
	books, _, err := shelf.Load(r.Context())
	if err != nil {
		sconehttp.WriteError(w, err)
		return
	}
	b, _ := io.ReadAll(r.Body)
	books = append(books, string(b))
	if err := shelf.Store(r.Context(), books); err != nil {
		sconehttp.WriteError(w, err)
		return
	}
	fmt.Fprint(w, books)
}

// An HTTP relay in front of servers running sconehttp.Middleware holds each
// client's SCONEs: the client is a plain http.Client, with no cookie jar and
// no SCONE code. The relay names clients with the same Identity function as
// a gRPC relay: the request's headers are its metadata. The shelf, added to
// on replica A, is there on replica B once A has stopped.
func ExampleNewHTTP() {
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/shelf/", sconehttp.Middleware(sealer, "shelf", sconehttp.WithScope(sconehttp.StaticScope("/shelf/")))(http.HandlerFunc(addBook)))
	a, b := newHTTPReplica(mux), newHTTPReplica(mux)
	defer b.Close()
	var upstream atomic.Pointer[httpReplica]
	upstream.Store(a)

	store := relay.NewMemoryStore(relay.DefaultMemoryConfig())
	defer store.Close()
	cfg := relay.DefaultConfig()
	cfg.Upstreams = []string{"shelf.internal:80"}
	cfg.Store = store
	cfg.Dial = func(ctx context.Context, _ string) (net.Conn, error) { return upstream.Load().lis.DialContext(ctx) }
	users := map[string]string{"Bearer s3cret-alice": "alice"} // stands for your token check
	cfg.Identity = func(ctx context.Context) (string, error) {
		v := metadata.ValueFromIncomingContext(ctx, "authorization")
		if len(v) == 0 {
			return "", nil
		}
		user, ok := users[v[0]]
		if !ok {
			return "", scone.NewError(scone.CodeWrongClient, "the bearer token does not verify")
		}
		return "user:" + user, nil
	}
	r, err := relay.NewHTTP(cfg)
	if err != nil {
		log.Fatal(err)
	}
	relayLis := bufconn.Listen(1 << 20)
	go r.Serve(relayLis)
	defer r.Stop()

	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return relayLis.DialContext(ctx) },
	}}
	add := func(book string) string {
		req, _ := http.NewRequest("POST", "http://relay/shelf/add", strings.NewReader(book))
		req.Header.Set("Authorization", "Bearer s3cret-alice")
		resp, err := client.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return fmt.Sprintf("%s (SCONE headers seen by the client: %d)", body, len(resp.Header.Values("Scone")))
	}
	fmt.Println("replica A:", add("dune"))
	upstream.Store(b)
	a.Close() // replica A is gone
	fmt.Println("replica B:", add("neuromancer"))
	clients, scones := store.Len()
	fmt.Println("the relay holds", scones, "SCONE for", clients, "client")
	// Output:
	// replica A: [dune] (SCONE headers seen by the client: 0)
	// replica B: [dune neuromancer] (SCONE headers seen by the client: 0)
	// the relay holds 1 SCONE for 1 client
}

// httpReplica is an HTTP server on an in-memory listener.
type httpReplica struct {
	*http.Server
	lis *bufconn.Listener
}

func newHTTPReplica(h http.Handler) *httpReplica {
	r := &httpReplica{&http.Server{Handler: h}, bufconn.Listen(1 << 20)}
	go r.Serve(r.lis)
	return r
}
