package hook

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/scone-project/scone"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is the fixed start time of tests.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// newTestSealer returns a Sealer on a test key with a fake clock.
func newTestSealer(t testing.TB) (*scone.Sealer, *fakeClock) {
	t.Helper()
	clk := &fakeClock{now: t0}
	k := scone.Key{ID: 1, Created: t0}
	copy(k.Secret[:], bytes.Repeat([]byte{1}, 32))
	ring, err := scone.NewKeyRing(1, k)
	if err != nil {
		t.Fatal(err)
	}
	s, err := scone.NewSealer(ring, scone.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	return s, clk
}

// sealHdr seals a SCONE of the given header fields, issued at t0.
func sealHdr(t testing.TB, s *scone.Sealer, service, scope string, version uint64, expires time.Time) []byte {
	t.Helper()
	tok, err := Seal(s, nil, &scone.SCONE{Service: service, Scope: scope, Version: version, IssuedAt: t0, Expires: expires})
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return tok
}
