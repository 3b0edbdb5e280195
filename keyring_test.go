package scone

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestRotation walks a whole rotation: seal under A, rotate to B, open the
// old SCONE (reported stale), re-seal it under B, retire A, and then the old
// SCONE fails with CodeUnknownKey while the re-sealed one opens.
func TestRotation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, clk := newTestSealer(t) // key A = 1
	want := Expect{Service: "cart"}
	old := mustSeal(t, s, sampleSCONE(clk.Now(), []byte("state")))

	ring := s.ring
	if err := ring.Add(testKey(2)); err != nil { // key B
		t.Fatal(err)
	}
	if err := ring.Promote(2); err != nil {
		t.Fatal(err)
	}

	st, err := s.Restore(ctx, old, want, "/shop.Gateway/")
	if err != nil {
		t.Fatalf("old SCONE after promoting B: %v", err)
	}
	if !st.stale {
		t.Fatal("a SCONE opened with a non-primary key is not reported stale")
	}
	// Even with re-sealing of unchanged state off, a stale SCONE is re-sealed.
	s2, _ := NewSealer(ring, WithClock(clk.Now), WithResealUnchanged(false))
	out, resealed, err := s2.Commit(nil, st)
	if err != nil || out != Updated {
		t.Fatalf("Commit of a stale SCONE = %v, %v", out, err)
	}
	if h, _ := ParseHeader(resealed); h.KeyID != 2 {
		t.Fatalf("re-sealed under key %d, want 2", h.KeyID)
	}

	if err := ring.Retire(1, clk.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.open(ctx, &SCONE{}, old, want); err != nil {
		t.Fatalf("retired key within its grace period: %v", err)
	}
	clk.Advance(time.Hour)
	_, err = s.open(ctx, &SCONE{}, old, want)
	wantCode(t, err, CodeUnknownKey)
	if _, err := s.open(ctx, &SCONE{}, resealed, want); err != nil {
		t.Fatalf("re-sealed SCONE after A retired: %v", err)
	}
	if n := ring.Prune(clk.Now()); n != 1 {
		t.Fatalf("Prune removed %d keys, want 1", n)
	}
	if ks := ring.Keys(); len(ks) != 1 || ks[0].ID != 2 || !ks[0].Primary {
		t.Fatalf("keys after prune: %+v", ks)
	}
}

func TestKeyRingErrors(t *testing.T) {
	t.Parallel()
	if _, err := NewKeyRing(3, testKey(1)); err == nil {
		t.Error("NewKeyRing accepted a primary that is not in the ring")
	}
	if _, err := NewKeyRing(1, testKey(1), testKey(1)); err == nil {
		t.Error("NewKeyRing accepted duplicate IDs")
	}
	ring, _ := NewKeyRing(1, testKey(1))
	if err := ring.Add(testKey(1)); err == nil {
		t.Error("Add accepted a duplicate ID")
	}
	wantCode(t, ring.Promote(5), CodeUnknownKey)
	wantCode(t, ring.Retire(5, t0), CodeUnknownKey)
	if err := ring.Retire(1, t0); err == nil {
		t.Error("Retire accepted the primary")
	}
	if ring.Primary() != 1 || len(ring.Keys()) != 1 {
		t.Error("a failed change altered the ring")
	}
}

// TestRotationUnderConcurrency seals and opens from several goroutines while
// keys are added, promoted and retired: no SCONE sealed under a key that is
// still in its grace period may fail to open (run with -race).
func TestRotationUnderConcurrency(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	ring := s.ring
	ctx := context.Background()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			var buf []byte
			var sc SCONE
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				var err error
				buf, err = s.seal(buf[:0], sampleSCONE(clk.Now(), []byte("x")))
				if err == nil {
					_, err = s.open(ctx, &sc, buf, Expect{Service: "cart"})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for id := uint32(2); id < 60; id++ {
		if err := ring.Add(testKey(id)); err != nil {
			t.Fatal(err)
		}
		if err := ring.Promote(id); err != nil {
			t.Fatal(err)
		}
		// Retire the previous key in the future, remove the one before it.
		if err := ring.Retire(id-1, clk.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if id > 3 {
			if err := ring.Retire(id-2, clk.Now()); err != nil {
				t.Fatal(err)
			}
			if n := ring.Prune(clk.Now()); n != 1 {
				t.Fatalf("Prune removed %d keys, want 1", n)
			}
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		// A seal under key n-2 can race with its removal; anything else is a bug.
		if CodeOf(err) != CodeUnknownKey {
			t.Fatal(err)
		}
	}
}

func TestKeyFileRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "keys.json")
	ring, _ := NewKeyRing(2, GenerateKey(1, t0), GenerateKey(2, t0))
	if err := ring.Retire(1, t0.Add(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, ring); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	got, err := ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p1, k1 := ring.export()
	p2, k2 := got.export()
	if p1 != p2 || len(k1) != len(k2) {
		t.Fatalf("primary %d/%d, %d/%d keys", p1, p2, len(k1), len(k2))
	}
	for i := range k1 {
		if k1[i].ID != k2[i].ID || k1[i].Secret != k2[i].Secret || !k1[i].RetireAt.Equal(k2[i].RetireAt) {
			t.Errorf("key %d changed through the file", k1[i].ID)
		}
	}

	// Reload: a new primary takes effect, the old key keeps opening.
	s, _ := NewSealer(got, WithClock(func() time.Time { return t0 }))
	tok := mustSeal(t, s, sampleSCONE(t0, []byte("x")))
	if err := ring.Add(GenerateKey(3, t0)); err != nil {
		t.Fatal(err)
	}
	if err := ring.Promote(3); err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, ring); err != nil {
		t.Fatal(err)
	}
	if err := ReloadKeyFile(got, path); err != nil {
		t.Fatal(err)
	}
	if got.Primary() != 3 {
		t.Fatalf("primary after reload = %d", got.Primary())
	}
	if _, err := s.open(context.Background(), &SCONE{}, tok, Expect{Service: "cart"}); err != nil {
		t.Fatalf("SCONE sealed before the reload: %v", err)
	}
	if err := ReloadKeyFile(got, filepath.Join(dir, "missing.json")); err == nil || got.Primary() != 3 {
		t.Fatal("a failed reload changed the ring or reported no error")
	}
}

func TestParseKeyFileErrors(t *testing.T) {
	t.Parallel()
	secret := "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
	for _, tc := range []struct{ name, file string }{
		{"not JSON", `keys`},
		{"wrong format", `{"format":"v0","primary":1,"keys":[{"id":1,"secret":"` + secret + `"}]}`},
		{"unknown field", `{"format":"scone-keys-v1","primary":1,"keys":[{"id":1,"secret":"` + secret + `","x":1}]}`},
		{"no keys", `{"format":"scone-keys-v1","primary":1,"keys":[]}`},
		{"short secret", `{"format":"scone-keys-v1","primary":1,"keys":[{"id":1,"secret":"AQID"}]}`},
		{"bad base64", `{"format":"scone-keys-v1","primary":1,"keys":[{"id":1,"secret":"!!"}]}`},
		{"duplicate ID", `{"format":"scone-keys-v1","primary":1,"keys":[{"id":1,"secret":"` + secret + `"},{"id":1,"secret":"` + secret + `"}]}`},
		{"missing primary", `{"format":"scone-keys-v1","primary":2,"keys":[{"id":1,"secret":"` + secret + `"}]}`},
		{"retired primary", `{"format":"scone-keys-v1","primary":1,"keys":[{"id":1,"secret":"` + secret + `","retire_at":"2026-01-01T00:00:00Z"}]}`},
		{"trailing data", `{"format":"scone-keys-v1","primary":1,"keys":[{"id":1,"secret":"` + secret + `"}]} {}`},
	} {
		_, _, err := ParseKeyFile([]byte(tc.file))
		if CodeOf(err) != CodeMalformed {
			t.Errorf("%s: got %v, want a malformed error", tc.name, err)
		}
	}
	_, _, err := ParseKeyFile(make([]byte, maxKeyFileSize+1))
	wantCode(t, err, CodeTooLarge)
}
