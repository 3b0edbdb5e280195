package scone

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestSealOpenRoundTrip(t *testing.T) {
	t.Parallel()
	for _, size := range []int{0, 1, 256, 4096, 60000} {
		s, clk := newTestSealer(t)
		data := bytes.Repeat([]byte{0xA5}, size)
		in := sampleSCONE(clk.Now(), data)
		in.Client = "alice"
		tok := mustSeal(t, s, in)
		var out SCONE
		o, err := s.open(context.Background(), &out, tok, Expect{Service: "cart", Client: "alice"})
		if err != nil {
			t.Fatalf("size %d: Open: %v", size, err)
		}
		if o.keyID != 1 || o.stale {
			t.Errorf("size %d: Opened = %+v", size, o)
		}
		in.Expires = in.Expires.Round(time.Millisecond)
		if !sconeEqual(in, &out) {
			t.Errorf("size %d: round trip changed the SCONE:\n in %+v\nout %+v", size, in, &out)
		}
	}
}

func sconeEqual(a, b *SCONE) bool {
	return a.Service == b.Service && a.Scope == b.Scope && a.Version == b.Version &&
		a.Expires.Equal(b.Expires) && a.Session == b.Session && a.IssuedAt.Equal(b.IssuedAt) &&
		a.Epoch == b.Epoch && a.Endpoint == b.Endpoint && a.Object == b.Object &&
		a.Status == b.Status && a.Client == b.Client && bytes.Equal(a.Data, b.Data) &&
		a.Started.Equal(b.Started) && bytes.Equal(a.bundle, b.bundle)
}

func TestSealIsFreshEachTime(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	sc := sampleSCONE(clk.Now(), []byte("same state"))
	a, b := mustSeal(t, s, sc), mustSeal(t, s, sc)
	if bytes.Equal(a, b) {
		t.Fatal("two seals of the same SCONE gave the same bytes: holders could be linked")
	}
}

func TestOpenReusesDataBuffer(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	tok := mustSeal(t, s, sampleSCONE(clk.Now(), bytes.Repeat([]byte{1}, 256)))
	out := SCONE{Data: make([]byte, 0, 1024)}
	p := &out.Data[:1][0]
	if _, err := s.open(context.Background(), &out, tok, Expect{Service: "cart"}); err != nil {
		t.Fatal(err)
	}
	if &out.Data[0] != p {
		t.Error("Open did not reuse sc.Data's storage")
	}
}

// downMarks is a MarkStore that cannot be reached.
type downMarks struct{ code Code }

func (h downMarks) Get(context.Context, string) ([]byte, uint64, error) {
	return nil, 0, NewError(h.code, "mark store unreachable")
}

func (h downMarks) Put(context.Context, string, []byte, uint64, time.Time) error {
	return NewError(h.code, "mark store unreachable")
}

// TestErrorCodes covers every error code: each case makes the condition and
// checks the code, and that the message leaks none of the sealed state.
func TestErrorCodes(t *testing.T) {
	t.Parallel()
	const secret = "s3cret-state-bytes"
	ctx := context.Background()
	covered := map[Code]bool{}
	cases := []struct {
		name string
		code Code
		run  func(t *testing.T) error
	}{
		{"short envelope", CodeMalformed, func(t *testing.T) error {
			s, _ := newTestSealer(t)
			_, err := s.open(ctx, &SCONE{}, []byte{formatV1, 0, 0}, Expect{Service: "cart"})
			return err
		}},
		{"unknown format", CodeMalformed, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			tok := mustSeal(t, s, sampleSCONE(clk.Now(), []byte(secret)))
			tok[0] = 3
			_, err := s.open(ctx, &SCONE{}, tok, Expect{Service: "cart"})
			return err
		}},
		{"bad text form", CodeMalformed, func(t *testing.T) error {
			_, err := DecodeText("not base64url!")
			return err
		}},
		{"bad key file", CodeMalformed, func(t *testing.T) error {
			_, _, err := ParseKeyFile([]byte(`{"format":"other"}`))
			return err
		}},
		{"flipped ciphertext", CodeTampered, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			tok := mustSeal(t, s, sampleSCONE(clk.Now(), []byte(secret)))
			tok[len(tok)-20] ^= 1
			_, err := s.open(ctx, &SCONE{}, tok, Expect{Service: "cart"})
			return err
		}},
		{"changed cleartext version", CodeTampered, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			tok := mustSeal(t, s, sampleSCONE(clk.Now(), []byte(secret)))
			tok[12]++ // version, low byte
			_, err := s.open(ctx, &SCONE{}, tok, Expect{Service: "cart"})
			return err
		}},
		{"sealed by a stranger's key", CodeTampered, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			ring, _ := NewKeyRing(1, GenerateKey(1, t0))
			other, _ := NewSealer(ring, WithClock(clk.Now))
			tok := mustSeal(t, other, sampleSCONE(clk.Now(), []byte(secret)))
			_, err := s.open(ctx, &SCONE{}, tok, Expect{Service: "cart"})
			return err
		}},
		{"expired", CodeExpired, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			tok := mustSeal(t, s, sampleSCONE(clk.Now(), []byte(secret)))
			clk.Advance(time.Hour)
			_, err := s.open(ctx, &SCONE{}, tok, Expect{Service: "cart"})
			return err
		}},
		{"unknown key ID", CodeUnknownKey, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			ring, _ := NewKeyRing(9, testKey(9))
			other, _ := NewSealer(ring, WithClock(clk.Now))
			tok := mustSeal(t, other, sampleSCONE(clk.Now(), []byte(secret)))
			_, err := s.open(ctx, &SCONE{}, tok, Expect{Service: "cart"})
			return err
		}},
		{"retired key", CodeUnknownKey, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			tok := mustSeal(t, s, sampleSCONE(clk.Now(), []byte(secret)))
			r := s.ring
			if err := r.Add(testKey(2)); err != nil {
				t.Fatal(err)
			}
			if err := r.Promote(2); err != nil {
				t.Fatal(err)
			}
			if err := r.Retire(1, clk.Now().Add(time.Minute)); err != nil {
				t.Fatal(err)
			}
			clk.Advance(time.Minute)
			_, err := s.open(ctx, &SCONE{}, tok, Expect{Service: "cart"})
			return err
		}},
		{"wrong service", CodeWrongService, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			tok := mustSeal(t, s, sampleSCONE(clk.Now(), []byte(secret)))
			_, err := s.open(ctx, &SCONE{}, tok, Expect{Service: "inventory"})
			return err
		}},
		{"over the budget on open", CodeTooLarge, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			tok := mustSeal(t, s, sampleSCONE(clk.Now(), make([]byte, 2000)))
			small, _ := NewSealer(s.ring, WithClock(clk.Now), WithMaxSize(1024))
			_, err := small.open(ctx, &SCONE{}, tok, Expect{Service: "cart"})
			return err
		}},
		{"over the budget on seal", CodeTooLarge, func(t *testing.T) error {
			s, clk := newTestSealer(t, WithMaxSize(1024))
			_, err := s.seal(nil, sampleSCONE(clk.Now(), make([]byte, 2000)))
			return err
		}},
		{"rolled back", CodeRolledBack, func(t *testing.T) error {
			s, clk := newTestSealer(t, WithMarkStore(NewMemoryMarkStore(10, newFakeClock().Now)))
			old := mustSeal(t, s, sampleSCONE(clk.Now(), []byte(secret)))
			spend(t, s, spend(t, s, old)) // two versions on
			_, err := s.open(ctx, &SCONE{}, old, Expect{Service: "cart"})
			return err
		}},
		{"revoked", CodeRevoked, func(t *testing.T) error {
			s, clk := newTestSealer(t, WithMarkStore(NewMemoryMarkStore(10, newFakeClock().Now)))
			tok := mustSeal(t, s, sampleSCONE(clk.Now(), []byte(secret)))
			if err := s.Revoke(ctx, Revocation{Service: "cart"}); err != nil {
				t.Fatal(err)
			}
			_, err := s.open(ctx, &SCONE{}, tok, Expect{Service: "cart"})
			return err
		}},
		{"session too old", CodeSessionExpired, func(t *testing.T) error {
			s, clk := newTestSealer(t, WithMaxSessionAge(time.Hour))
			sc := sampleSCONE(clk.Now(), []byte(secret))
			sc.Started = clk.Now().Add(-time.Hour)
			_, err := s.open(ctx, &SCONE{}, mustSeal(t, s, sc), Expect{Service: "cart"})
			return err
		}},
		{"bundle mismatch", CodeBundle, func(t *testing.T) error {
			return NewError(CodeBundle, "made by the hooks (internal/hook tests)")
		}},
		{"wrong client", CodeWrongClient, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			sc := sampleSCONE(clk.Now(), []byte(secret))
			sc.Client = "alice"
			tok := mustSeal(t, s, sc)
			_, err := s.open(ctx, &SCONE{}, tok, Expect{Service: "cart", Client: "mallory"})
			return err
		}},
		{"holder full", CodeExhausted, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			d := NewDict(WithDictLimits(1, 1<<20), WithDictClock(clk.Now))
			a := sampleSCONE(clk.Now(), nil)
			b := sampleSCONE(clk.Now(), nil)
			b.Service = "inventory"
			if _, err := d.Put(mustSeal(t, s, a)); err != nil {
				t.Fatal(err)
			}
			_, err := d.Put(mustSeal(t, s, b))
			return err
		}},
		{"anti-rollback store full", CodeExhausted, func(t *testing.T) error {
			clk := newFakeClock()
			s, _ := newTestSealer(t, WithClock(clk.Now), WithMarkStore(NewMemoryMarkStore(1, clk.Now)))
			a, b := sampleSCONE(clk.Now(), nil), sampleSCONE(clk.Now(), nil)
			b.Session[0] = 99
			spend(t, s, mustSeal(t, s, a))
			st, err := s.Restore(ctx, mustSeal(t, s, b), Expect{Service: "cart"}, "/")
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = s.Commit(nil, st)
			return err
		}},
		{"anti-rollback store down", CodeUnavailable, func(t *testing.T) error {
			s, clk := newTestSealer(t, WithMarkStore(downMarks{CodeUnavailable}))
			_, err := s.open(ctx, &SCONE{}, mustSeal(t, s, sampleSCONE(clk.Now(), nil)), Expect{Service: "cart"})
			return err
		}},
		{"anti-rollback store did not answer a write", CodeInDoubt, func(t *testing.T) error {
			// A store's own code passes through: the mark may have moved.
			s, clk := newTestSealer(t, WithMarkStore(downMarks{CodeInDoubt}))
			_, err := s.open(ctx, &SCONE{}, mustSeal(t, s, sampleSCONE(clk.Now(), nil)), Expect{Service: "cart"})
			return err
		}},
		{"another call first", CodeConflict, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			d := NewDict(WithDictClock(clk.Now))
			v1 := sealHdr(t, s, "cart", "/", 1, clk.Now().Add(time.Hour))
			d.Put(v1)
			// Two calls both started from v1; the first one's v2 is kept...
			if err := d.applyIfBase(nil, [][]byte{sealHdr(t, s, "cart", "/", 2, clk.Now().Add(time.Hour))}, [][]byte{v1}); err != nil {
				t.Fatal(err)
			}
			// ...so the second one's v2 would lose it.
			return d.applyIfBase(nil, [][]byte{sealHdr(t, s, "cart", "/", 2, clk.Now().Add(time.Hour))}, [][]byte{v1})
		}},
		{"no hook in context", CodeInternal, func(t *testing.T) error {
			_, _, err := NewTyped(JSONCodec[map[string]int]()).Load(ctx)
			return err
		}},
		{"seal without a service", CodeInternal, func(t *testing.T) error {
			s, clk := newTestSealer(t)
			sc := sampleSCONE(clk.Now(), nil)
			sc.Service = ""
			_, err := s.seal(nil, sc)
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run(t)
			wantCode(t, err, tc.code)
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error message leaks sealed state: %v", err)
			}
		})
		covered[tc.code] = true
	}
	for c := Code(1); int(c) < len(codeNames); c++ {
		if !covered[c] {
			t.Errorf("no test case for code %v", c)
		}
	}
}

// TestEveryBitFlipIsRejected flips each bit of a sealed SCONE in turn: every
// flip must fail to open, with a code that says why.
func TestEveryBitFlipIsRejected(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	tok := mustSeal(t, s, sampleSCONE(clk.Now(), []byte("a short cart: 2 books")))
	ctx := context.Background()
	counts := map[Code]int{}
	var out SCONE
	for i := range len(tok) * 8 {
		bad := bytes.Clone(tok)
		bad[i/8] ^= 1 << (i % 8)
		_, err := s.open(ctx, &out, bad, Expect{Service: "cart"})
		switch c := CodeOf(err); c {
		case CodeMalformed, CodeTampered, CodeUnknownKey:
			counts[c]++
		default:
			t.Fatalf("bit %d flipped: Open gave %v (code %v)", i, err, c)
		}
	}
	if _, err := s.open(ctx, &out, tok, Expect{Service: "cart"}); err != nil {
		t.Fatalf("the original no longer opens: %v", err)
	}
	t.Logf("%d bits flipped: %v", len(tok)*8, counts)
}

func TestSealLimits(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	long := strings.Repeat("x", 256)
	for _, tc := range []struct {
		name string
		edit func(*SCONE)
		code Code
	}{
		{"service too long", func(sc *SCONE) { sc.Service = long }, CodeInternal},
		{"scope too long", func(sc *SCONE) { sc.Scope = long }, CodeInternal},
		{"object too long", func(sc *SCONE) { sc.Object = strings.Repeat("o", maxFieldLen+1) }, CodeTooLarge},
		{"no expiry", func(sc *SCONE) { sc.Expires = time.Time{} }, CodeInternal},
		{"lifetime beyond TTL", func(sc *SCONE) { sc.Expires = sc.IssuedAt.Add(DefaultTTL + time.Second) }, CodeInternal},
	} {
		sc := sampleSCONE(clk.Now(), nil)
		tc.edit(sc)
		_, err := s.seal(nil, sc)
		if CodeOf(err) != tc.code {
			t.Errorf("%s: got %v, want code %v", tc.name, err, tc.code)
		}
	}
	// The largest service and scope are fine.
	sc := sampleSCONE(clk.Now(), nil)
	sc.Service, sc.Scope = long[:maxServiceLen], long[:maxScopeLen]
	tok := mustSeal(t, s, sc)
	if _, err := s.open(context.Background(), &SCONE{}, tok, Expect{Service: sc.Service}); err != nil {
		t.Fatal(err)
	}
}

func TestNewSealerValidates(t *testing.T) {
	t.Parallel()
	ring, _ := NewKeyRing(1, testKey(1))
	for _, opt := range []Option{WithTTL(0), WithMaxSize(10), WithMaxSize(MaxEnvelopeSize + 1), WithClock(nil), WithCompression(-1)} {
		if _, err := NewSealer(ring, opt); CodeOf(err) != CodeInternal {
			t.Errorf("NewSealer accepted a bad option: %v", err)
		}
	}
	if _, err := NewSealer(nil); CodeOf(err) != CodeInternal {
		t.Errorf("NewSealer(nil) = %v", err)
	}
}

func TestCompression(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t, WithCompression(128), WithMaxSize(2048))
	data := bytes.Repeat([]byte("book:978-0-13-468599-1 qty:1; "), 200) // 6000 bytes, compressible
	tok := mustSeal(t, s, sampleSCONE(clk.Now(), data))
	if len(tok) >= len(data) {
		t.Fatalf("compressed SCONE is %d bytes for %d bytes of data", len(tok), len(data))
	}
	var out SCONE
	if _, err := s.open(context.Background(), &out, tok, Expect{Service: "cart"}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Data, data) {
		t.Fatal("data changed through compression")
	}
	// Incompressible data is sealed as is and still fails the budget clearly.
	noise := make([]byte, 4096)
	rand.NewChaCha8([32]byte{}).Read(noise)
	if _, err := s.seal(nil, sampleSCONE(clk.Now(), noise)); CodeOf(err) != CodeTooLarge {
		t.Fatalf("incompressible data over the budget: %v", err)
	}
}

func TestInflateLimit(t *testing.T) {
	t.Parallel()
	bomb := deflate(nil, make([]byte, 1<<20))
	if _, err := inflate(nil, bomb, 1<<16); CodeOf(err) != CodeTooLarge {
		t.Fatalf("inflating a bomb: %v", err)
	}
	if _, err := inflate(nil, bomb[:len(bomb)/2], 1<<21); CodeOf(err) != CodeMalformed {
		t.Fatalf("inflating a truncated stream: %v", err)
	}
}

// TestCompressedStateStillOpens: state that would not inflate on open is
// refused when sealing, so nothing acknowledged becomes unreadable.
func TestCompressedStateStillOpens(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t, WithCompression(64), WithMaxSize(1024))
	if _, err := s.seal(nil, sampleSCONE(clk.Now(), make([]byte, 16*1024+1))); CodeOf(err) != CodeTooLarge {
		t.Fatalf("sealing past the inflate limit: %v", err)
	}
	tok := mustSeal(t, s, sampleSCONE(clk.Now(), make([]byte, 16*1024)))
	if _, err := s.open(context.Background(), &SCONE{}, tok, Expect{Service: "cart"}); err != nil {
		t.Fatalf("state at the limit: %v", err)
	}
}

func TestKeyPrintsNoSecret(t *testing.T) {
	t.Parallel()
	k := GenerateKey(3, t0)
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		out := fmt.Sprintf(verb, k)
		if strings.Contains(out, fmt.Sprint(k.Secret[0:4])) || !strings.Contains(out, "REDACTED") {
			t.Errorf("%s prints %q", verb, out)
		}
	}
	if out := fmt.Sprintf("%+v", []Key{k}); !strings.Contains(out, "REDACTED") {
		t.Errorf("a slice of keys prints %q", out)
	}
}
