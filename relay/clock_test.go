package relay_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/relay"
	"github.com/scone-project/scone/sconegrpc"
)

// offsetClock is time.Now plus an offset the test sets.
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

func (c *offsetClock) set(d time.Duration) { c.off.Store(int64(d)) }

// givingUpstream is an inventory that answers Held with its SCONE while
// give is set, as a server does that starts a session, and with none
// after.
type givingUpstream struct {
	pb.UnimplementedInventoryServer
	tok  []byte
	give atomic.Bool
}

func (u *givingUpstream) Held(ctx context.Context, _ *pb.HeldRequest) (*pb.Reservations, error) {
	if u.give.Load() {
		f := sconegrpc.Frame{SCONEs: [][]byte{u.tok}}
		grpc.SetTrailer(ctx, metadata.Pairs(sconegrpc.MetadataKey, string(sconegrpc.AppendFrame(nil, &f))))
	}
	return &pb.Reservations{}, nil
}

// TestRelayClock: the relay decides by Config.Now. A SCONE held in the
// default store counts as expired under a clock set past its expiry, and
// not under the real clock; with VerifyKeys, a SCONE from an upstream is
// refused as expired under such a clock, and stored under the real one.
func TestRelayClock(t *testing.T) {
	t.Parallel()
	ring := newRing(t)
	now := time.Now()
	tok, err := newSealer(t, ring).Seal(nil, &scone.SCONE{
		Service: "bookstore.v1.Inventory", Scope: "/", Version: 1, IssuedAt: now, Expires: now.Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	const past = 2 * time.Hour // past the SCONE's expiry
	for _, verify := range []bool{false, true} {
		name := "held"
		if verify {
			name = "verified"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			up := &givingUpstream{tok: tok}
			srv := grpc.NewServer()
			pb.RegisterInventoryServer(srv, up)
			go srv.Serve(lis)
			defer srv.Stop()
			clock := &offsetClock{}
			cfg := relayConfig([]string{lis.Addr().String()}, nil) // the default store
			cfg.Now = clock.now
			if verify {
				cfg.VerifyKeys = ring
			}
			r, addr := startRelay(t, cfg)
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			inv := pb.NewInventoryClient(conn)
			ctx := metadata.AppendToOutgoingContext(context.Background(), "scone-client", "alice")
			held := func() error { _, err := inv.Held(ctx, &pb.HeldRequest{}); return err }

			up.give.Store(true)
			if verify {
				clock.set(past)
				if err := held(); sconegrpc.CodeOf(err) != scone.CodeExpired {
					t.Fatalf("a SCONE from the upstream under a clock past its expiry: %v, want code %v", err, scone.CodeExpired)
				}
				clock.set(0)
			}
			misses := lookups(t, r, "miss")
			if err := held(); err != nil {
				t.Fatalf("a SCONE from the upstream under the real clock: %v", err)
			}
			if m := lookups(t, r, "miss"); m != misses+1 {
				t.Fatalf("the relay held a SCONE before it stored one: lookups miss %v→%v, want one more", misses, m)
			}
			up.give.Store(false)

			// Stored: the next call under the real clock carries it.
			hits, misses := lookups(t, r, "hit"), lookups(t, r, "miss")
			if err := held(); err != nil {
				t.Fatal(err)
			}
			if h := lookups(t, r, "hit"); h != hits+1 {
				t.Fatalf("under the real clock: lookups hit %v→%v, want one more", hits, h)
			}
			if n := expired(t, r); n != 0 {
				t.Fatalf("under the real clock: %v SCONEs expired, want 0", n)
			}
			// Under a clock past its expiry, the relay holds nothing.
			clock.set(past)
			if err := held(); err != nil {
				t.Fatal(err)
			}
			if m := lookups(t, r, "miss"); m != misses+1 {
				t.Fatalf("under a clock past the expiry: lookups miss %v→%v, want one more", misses, m)
			}
			if n := expired(t, r); n != 1 {
				t.Fatalf("under a clock past the expiry: %v SCONEs expired, want 1", n)
			}
		})
	}
}

// expired reads the relay's count of SCONEs its store found expired.
func expired(t *testing.T, r *relay.Server) float64 {
	t.Helper()
	mfs, err := r.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "scone_relay_scones_expired_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("no scone_relay_scones_expired_total metric")
	return 0
}
