package scone

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"
)

// t0 is the fixed start time of tests.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testKey returns a key whose secret is the byte id repeated: for tests only.
func testKey(id uint32) Key {
	k := Key{ID: id, Created: t0}
	copy(k.Secret[:], bytes.Repeat([]byte{byte(id)}, keySize))
	return k
}

// newTestSealer returns a Sealer on key 1 with a fake clock.
func newTestSealer(t testing.TB, opts ...Option) (*Sealer, *fakeClock) {
	t.Helper()
	clk := newFakeClock()
	ring, err := NewKeyRing(1, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSealer(ring, append([]Option{WithClock(clk.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s, clk
}

// sampleSCONE returns a SCONE of service "cart" with every field set.
func sampleSCONE(now time.Time, data []byte) *SCONE {
	return &SCONE{
		Service:  "cart",
		Scope:    "/shop.Gateway/",
		Version:  7,
		Expires:  now.Add(time.Hour),
		Session:  SessionID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		IssuedAt: now,
		Epoch:    0,
		Endpoint: "10.0.0.7:9000",
		Object:   "cart-42",
		Status:   "checkout:payment-pending",
		Client:   "",
		Data:     data,
	}
}

func mustSeal(t testing.TB, s *Sealer, sc *SCONE) []byte {
	t.Helper()
	tok, err := s.seal(nil, sc)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return tok
}

// wantCode fails the test unless err has code want.
func wantCode(t testing.TB, err error, want Code) {
	t.Helper()
	if got := CodeOf(err); got != want {
		t.Fatalf("error %v has code %v, want %v", err, got, want)
	}
}

// spend serves one request with tok through s (Restore, then Commit of a
// change) and returns the SCONE sealed after it.
func spend(t testing.TB, s *Sealer, tok []byte) []byte {
	t.Helper()
	h, err := ParseHeader(tok)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Restore(context.Background(), tok, Expect{Service: h.Service}, h.Scope)
	if err != nil {
		t.Fatal(err)
	}
	st.SetData([]byte("spent"))
	_, out, err := s.Commit(nil, st)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
