package sconehttp_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/sconehttp"
)

type sessionKey struct{}

// rmw reads, changes and writes back size bytes of session state.
func rmw(size int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if st, ok := scone.FromContext(r.Context()); ok && size > 0 {
			st.Update(func(d []byte) []byte {
				if len(d) != size {
					d = make([]byte, size) // a new session
				}
				d[0]++
				return d
			})
		}
		w.Write([]byte(`{"isbn":"9780441013593","title":"Dune","priceCents":"1099"}`))
	})
}

// BenchmarkHTTP measures a GET over loopback from 64 concurrent callers
// (keep-alive connections), each caller its own session:
//
//	state=none   plain net/http: no middleware, no state (the ceiling)
//	state=256    the middleware and a Transport (header carrier), 256 B of state read, changed and written per request
//	state=4096   the same with 4 KiB
func BenchmarkHTTP(b *testing.B) {
	for _, size := range []int{0, 256, 4096} {
		name := "state=none"
		if size > 0 {
			name = fmt.Sprintf("state=%d", size)
		}
		b.Run(name, func(b *testing.B) {
			h := rmw(size)
			base := http.DefaultTransport.(*http.Transport).Clone()
			base.MaxIdleConnsPerHost = 128
			var rt http.RoundTripper = base
			if size > 0 {
				h = sconehttp.Middleware(newSealer(b), "bench")(h)
				rt = sconehttp.NewTransport(base, sconehttp.WithHolderFromContext(func(ctx context.Context) scone.Holder {
					return ctx.Value(sessionKey{}).(scone.Holder)
				}))
			}
			srv := httptest.NewServer(h)
			defer srv.Close()
			client := &http.Client{Transport: rt}
			defer base.CloseIdleConnections()
			var failed atomic.Int64
			b.SetParallelism(32) // 64 callers on 2 CPUs
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.WithValue(context.Background(), sessionKey{}, scone.Holder(scone.NewDict()))
				req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/book", nil)
				for pb.Next() {
					resp, err := client.Do(req)
					if err != nil {
						failed.Add(1)
						continue
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						failed.Add(1)
					}
				}
			})
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d requests failed", n)
			}
		})
	}
}
