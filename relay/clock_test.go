package relay_test

import (
	"bytes"
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
	"github.com/scone-project/scone/internal/grpcframe"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/relay"
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
		f := grpcframe.Frame{SCONEs: [][]byte{u.tok}}
		grpc.SetTrailer(ctx, metadata.Pairs(grpcframe.MetadataKey, string(grpcframe.AppendFrame(nil, &f))))
	}
	return &pb.Reservations{}, nil
}

// TestRelayClock: the relay decides by Config.Now. A SCONE held in the
// default store counts as expired under a clock set past its expiry, and
// not under the real clock.
func TestRelayClock(t *testing.T) {
	t.Parallel()
	ring := newRing(t)
	now := time.Now()
	tok, err := hook.Seal(newSealer(t, ring), nil, &scone.SCONE{
		Service: "bookstore.v1.Inventory", Scope: "/", Version: 1, IssuedAt: now, Expires: now.Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	const past = 2 * time.Hour // past the SCONE's expiry
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

// stepClock is a fixed time plus an offset the test sets.
type stepClock struct {
	base time.Time
	off  atomic.Int64
}

func (c *stepClock) now() time.Time { return c.base.Add(time.Duration(c.off.Load())) }

func (c *stepClock) set(d time.Duration) { c.off.Store(int64(d)) }

// TestStoreClockSkew: a store whose clock runs ahead of the servers' by
// less than its MaxClockSkew still returns a live SCONE, takes the reply
// that follows it, and (JetStream) gives the key a time to live that
// outlasts the SCONE; ahead by more, it treats the SCONE as expired, as a
// store with no tolerance does already when its clock passes the expiry.
func TestStoreClockSkew(t *testing.T) {
	t.Parallel()
	const (
		life   = 30 * time.Second // the SCONEs' lifetime, by the servers' clock
		within = 45 * time.Second // ahead past their expiry, by less than the tolerance
		beyond = 2 * time.Minute  // ahead past their expiry plus the tolerance
	)
	base := time.Now()
	s := newSealer(t, newRing(t), scone.WithClock(func() time.Time { return base }))
	seal := func(v uint64) []byte {
		tok, err := hook.Seal(s, nil, &scone.SCONE{Service: "cart", Scope: "/", Version: v, IssuedAt: base, Expires: base.Add(life)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	type store interface {
		relay.Store
		Expired() uint64
	}
	kinds := []struct {
		name string
		open func(t *testing.T, now func() time.Time, skew time.Duration) (store, func() time.Duration)
	}{
		{"memory", func(t *testing.T, now func() time.Time, skew time.Duration) (store, func() time.Duration) {
			cfg := relay.DefaultMemoryConfig()
			cfg.Now, cfg.MaxClockSkew = now, skew
			return relay.NewMemoryStore(cfg), nil
		}},
		{"jetstream", func(t *testing.T, now func() time.Time, skew time.Duration) (store, func() time.Duration) {
			js := connect(t, startNATS(t))
			cfg := relay.DefaultJetStreamConfig()
			cfg.Now, cfg.MaxClockSkew = now, skew
			st, err := relay.NewJetStreamStore(t.Context(), js, cfg)
			if err != nil {
				t.Fatal(err)
			}
			// ttl reads the time to live of the last write.
			ttl := func() time.Duration {
				str, err := js.Stream(t.Context(), "KV_"+cfg.Bucket)
				if err != nil {
					t.Fatal(err)
				}
				last, err := str.GetLastMsgForSubject(t.Context(), "$KV."+cfg.Bucket+".>")
				if err != nil {
					t.Fatal(err)
				}
				d, err := time.ParseDuration(last.Header.Get("Nats-TTL"))
				if err != nil {
					t.Fatalf("the last write's TTL: %v", err)
				}
				return d
			}
			return st, ttl
		}},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			clock := &stepClock{base: base}
			st, ttl := k.open(t, clock.now, relay.DefaultMaxClockSkew)
			v1, v2 := seal(1), seal(2)
			if err := st.Apply(ctx, "alice", &hook.Reply{SCONEs: [][]byte{v1}}, nil); err != nil {
				t.Fatal(err)
			}

			clock.set(within)
			got, err := st.Get(ctx, "alice", "/cart.Cart/Get")
			if err != nil || len(got) != 1 || !bytes.Equal(got[0], v1) {
				t.Fatalf("ahead by %v, within the tolerance: Get = %d SCONEs, %v; want the live one", within, len(got), err)
			}
			// The reply to the request that carried it replaces it.
			if err := st.Apply(ctx, "alice", &hook.Reply{SCONEs: [][]byte{v2}}, got); err != nil {
				t.Fatalf("ahead by %v, within the tolerance: the reply to a request that carried the live SCONE: %v", within, err)
			}
			if ttl != nil {
				if d := ttl(); d < life {
					t.Fatalf("ahead by %v, within the tolerance: the key's time to live is %v, shorter than the SCONE's life %v", within, d, life)
				}
			}
			got, err = st.Get(ctx, "alice", "/cart.Cart/Get")
			if err != nil || len(got) != 1 || !bytes.Equal(got[0], v2) {
				t.Fatalf("ahead by %v, within the tolerance: after the reply, Get = %d SCONEs, %v; want its SCONE", within, len(got), err)
			}
			if n := st.Expired(); n != 0 {
				t.Fatalf("ahead by %v, within the tolerance: %d SCONEs expired, want 0", within, n)
			}

			clock.set(beyond)
			if got, err := st.Get(ctx, "alice", "/cart.Cart/Get"); err != nil || len(got) != 0 {
				t.Fatalf("ahead by %v, beyond the tolerance: Get = %d SCONEs, %v; want none", beyond, len(got), err)
			}
			if n := st.Expired(); n != 1 {
				t.Fatalf("ahead by %v, beyond the tolerance: %d SCONEs expired, want 1", beyond, n)
			}
		})
		t.Run(k.name+"/no-tolerance", func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			clock := &stepClock{base: base}
			st, _ := k.open(t, clock.now, 0)
			if err := st.Apply(ctx, "alice", &hook.Reply{SCONEs: [][]byte{seal(1)}}, nil); err != nil {
				t.Fatal(err)
			}
			clock.set(within)
			if got, err := st.Get(ctx, "alice", "/cart.Cart/Get"); err != nil || len(got) != 0 {
				t.Fatalf("ahead by %v with no tolerance: Get = %d SCONEs, %v; want none", within, len(got), err)
			}
		})
	}
}

// recordingUpstream is a givingUpstream that also records how many SCONEs
// each request carried (the relay attaches them in metadata to a service
// without reflection).
type recordingUpstream struct {
	givingUpstream
	carried atomic.Int64
}

func (u *recordingUpstream) Held(ctx context.Context, req *pb.HeldRequest) (*pb.Reservations, error) {
	n := 0
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get(grpcframe.MetadataKey) {
		if f, err := grpcframe.ParseFrame([]byte(v)); err == nil {
			n += len(f.SCONEs)
		}
	}
	u.carried.Store(int64(n))
	return u.givingUpstream.Held(ctx, req)
}

// TestRelayClockSkew: a relay whose clock runs ahead of the servers' past
// a SCONE's expiry, by less than Config.MaxClockSkew, takes the SCONE from
// the upstream, keeps it and attaches it to the next
// request; ahead by more, it holds nothing for the client, as it would
// with no tolerance.
func TestRelayClockSkew(t *testing.T) {
	t.Parallel()
	ring := newRing(t)
	now := time.Now()
	tok, err := hook.Seal(newSealer(t, ring), nil, &scone.SCONE{
		Service: "bookstore.v1.Inventory", Scope: "/", Version: 1, IssuedAt: now, Expires: now.Add(30 * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
	const (
		within = 45 * time.Second // past the SCONE's expiry, within the tolerance
		beyond = 2 * time.Minute  // past its expiry plus the tolerance
	)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := &recordingUpstream{givingUpstream: givingUpstream{tok: tok}}
	srv := grpc.NewServer()
	pb.RegisterInventoryServer(srv, up)
	go srv.Serve(lis)
	defer srv.Stop()
	clock := &offsetClock{}
	cfg := relayConfig([]string{lis.Addr().String()}, nil) // the default store
	cfg.Now = clock.now
	r, addr := startRelay(t, cfg)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	inv := pb.NewInventoryClient(conn)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "scone-client", "alice")
	held := func() error { _, err := inv.Held(ctx, &pb.HeldRequest{}); return err }

	clock.set(within)
	up.give.Store(true)
	if err := held(); err != nil {
		t.Fatalf("ahead by %v: the SCONE from the upstream: %v", within, err)
	}
	up.give.Store(false)
	hits := lookups(t, r, "hit")
	if err := held(); err != nil {
		t.Fatal(err)
	}
	if n := up.carried.Load(); n != 1 {
		t.Fatalf("ahead by %v: the next request carried %d SCONEs, want the live one", within, n)
	}
	if h := lookups(t, r, "hit"); h != hits+1 {
		t.Fatalf("ahead by %v: lookups hit %v→%v, want one more", within, hits, h)
	}
	if n := expired(t, r); n != 0 {
		t.Fatalf("ahead by %v: %v SCONEs expired, want 0", within, n)
	}

	clock.set(beyond)
	misses := lookups(t, r, "miss")
	if err := held(); err != nil {
		t.Fatal(err)
	}
	if n := up.carried.Load(); n != 0 {
		t.Fatalf("ahead by %v: the request carried %d SCONEs, want none", beyond, n)
	}
	if m := lookups(t, r, "miss"); m != misses+1 {
		t.Fatalf("ahead by %v: lookups miss %v→%v, want one more", beyond, misses, m)
	}
	if n := expired(t, r); n != 1 {
		t.Fatalf("ahead by %v: %v SCONEs expired, want 1", beyond, n)
	}
}
