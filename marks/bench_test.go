package marks_test

import (
	"context"
	"testing"
	"time"

	"github.com/scone-project/scone"
)

// BenchmarkSpend is one request of a session through a Sealer: Restore the
// SCONE, change the state, Commit the next version. store=none is the
// default (client mode, no mark); memory is scone.NewMemoryMarkStore;
// jetstream is this package's store on an embedded NATS server on
// loopback (a read of the service's epoch and of the session's mark, and a
// compare-and-set write, per request).
func BenchmarkSpend(b *testing.B) {
	ns := startNATS(b)
	for _, tc := range []struct {
		name  string
		store func() scone.MarkStore
	}{
		{"none", nil},
		{"memory", func() scone.MarkStore { return scone.NewMemoryMarkStore(1<<20, nil) }},
		{"jetstream", func() scone.MarkStore { return newStore(b, ns) }},
	} {
		b.Run("store="+tc.name, func(b *testing.B) {
			ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
			if err != nil {
				b.Fatal(err)
			}
			var opts []scone.Option
			if tc.store != nil {
				opts = append(opts, scone.WithMarkStore(tc.store()))
			}
			s, err := scone.NewSealer(ring, opts...)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			want := scone.Expect{Service: "cart"}
			data := make([]byte, 256)
			var tok []byte
			b.ReportAllocs()
			for b.Loop() {
				st, err := s.Restore(ctx, tok, want, "/")
				if err != nil {
					b.Fatal(err)
				}
				st.SetData(data)
				_, tok, err = s.Commit(nil, st)
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
