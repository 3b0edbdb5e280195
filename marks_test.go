package scone

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestMemoryMarkStore(t *testing.T) {
	t.Parallel()
	clk := newFakeClock()
	m := NewMemoryMarkStore(2, clk.Now)
	ctx := t.Context()
	exp := clk.Now().Add(time.Minute)
	if err := m.Put(ctx, "a", []byte("1"), 0, exp); err != nil {
		t.Fatal(err)
	}
	v, rev, err := m.Get(ctx, "a")
	if err != nil || string(v) != "1" || rev == 0 {
		t.Fatalf("Get = %q %d %v", v, rev, err)
	}
	wantCode(t, m.Put(ctx, "a", []byte("x"), 0, exp), CodeConflict)     // not absent
	wantCode(t, m.Put(ctx, "a", []byte("x"), rev+1, exp), CodeConflict) // another revision
	if err := m.Put(ctx, "a", []byte("2"), rev, clk.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	wantCode(t, m.Put(ctx, "a", []byte("3"), rev, exp), CodeConflict) // spent
	if err := m.Put(ctx, "b", nil, 0, exp); err != nil {
		t.Fatal(err)
	}
	wantCode(t, m.Put(ctx, "c", nil, 0, exp), CodeExhausted) // full of live marks
	clk.Advance(2 * time.Second)
	// A newer write with a shorter life keeps the older expiry: the mark
	// outlives every version it refuses.
	if v, _, _ := m.Get(ctx, "a"); string(v) != "2" {
		t.Fatalf("mark a after a shorter write: %q", v)
	}
	clk.Advance(time.Minute)
	if err := m.Put(ctx, "c", nil, 0, clk.Now().Add(time.Minute)); err != nil {
		t.Fatalf("after the marks expired: %v", err)
	}
}

// TestSpentOnce: of concurrent requests carrying the same version, exactly
// one seals a successor; the others are refused and change nothing.
func TestSpentOnce(t *testing.T) {
	t.Parallel()
	s, _ := newTestSealer(t, WithMarkStore(NewMemoryMarkStore(100, newFakeClock().Now)))
	tok := spend(t, s, nil0(t, s))
	const n = 16
	var wg sync.WaitGroup
	codes := make([]Code, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			st, err := s.Restore(context.Background(), tok, Expect{Service: "cart"}, "/")
			if err == nil {
				st.SetData([]byte{byte(i)})
				_, _, err = s.Commit(nil, st)
			}
			codes[i] = CodeOf(err)
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, c := range codes {
		switch c {
		case CodeUnknown:
			ok++
		case CodeConflict, CodeRolledBack:
		default:
			t.Errorf("refused with %v", c)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of %d requests with one version took effect, want 1 (%v)", ok, n, codes)
	}
}

// nil0 returns the first SCONE of a new session of "cart".
func nil0(t *testing.T, s *Sealer) []byte {
	t.Helper()
	st, err := s.Restore(context.Background(), nil, Expect{Service: "cart"}, "/")
	if err != nil {
		t.Fatal(err)
	}
	st.SetData([]byte("new"))
	_, tok, err := s.Commit(nil, st)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestLostReply: a holder that presents the version just before the newest
// is refused with the newest SCONE, and goes on with it; older versions are
// refused without one.
func TestLostReply(t *testing.T) {
	t.Parallel()
	s, _ := newTestSealer(t, WithMarkStore(NewMemoryMarkStore(100, newFakeClock().Now)))
	v1 := nil0(t, s)
	v2 := spend(t, s, v1)
	v3 := spend(t, s, v2) // its reply is lost: the holder still has v2
	_, err := s.Restore(context.Background(), v2, Expect{Service: "cart"}, "/")
	wantCode(t, err, CodeRolledBack)
	e := err.(*Error)
	if string(e.newest) != string(v3) {
		t.Fatal("the refusal does not carry the newest SCONE")
	}
	spend(t, s, e.newest) // the holder goes on
	_, err = s.Restore(context.Background(), v1, Expect{Service: "cart"}, "/")
	wantCode(t, err, CodeRolledBack)
	if err.(*Error).newest != nil {
		t.Fatal("a refusal of an older version carries a SCONE")
	}
}

// TestRevokeAndAge: a revoked session, every session of a revoked client,
// and a session past the maximum age are refused with their own codes,
// however often re-sealed.
func TestRevokeAndAge(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newFakeClock()
	marks := NewMemoryMarkStore(100, clk.Now)
	s, _ := newTestSealer(t, WithClock(clk.Now), WithMarkStore(marks), WithMaxSessionAge(time.Hour))
	// A replica sharing the store.
	replica, _ := newTestSealer(t, WithClock(clk.Now), WithMarkStore(marks), WithMaxSessionAge(time.Hour))
	alice := Expect{Service: "cart", Client: "alice"}
	seal := func(s *Sealer, tok []byte, want Expect) ([]byte, error) {
		st, err := s.Restore(ctx, tok, want, "/")
		if err != nil {
			return nil, err
		}
		st.SetData([]byte("x"))
		_, out, err := s.Commit(nil, st)
		return out, err
	}
	a, _ := seal(s, nil, Expect{Service: "cart"})
	b, _ := seal(s, nil, Expect{Service: "cart"})
	var sc SCONE
	if _, err := s.open(ctx, &sc, a, Expect{Service: "cart"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, Revocation{Session: sc.Session}); err != nil {
		t.Fatal(err)
	}
	_, err := seal(replica, a, Expect{Service: "cart"})
	wantCode(t, err, CodeRevoked)
	if b, err = seal(replica, b, Expect{Service: "cart"}); err != nil {
		t.Fatalf("another session: %v", err)
	}

	// Log out everywhere: alice's sessions started before end, bob's and
	// alice's new ones go on.
	bound, _ := newTestSealer(t, WithClock(clk.Now), WithMarkStore(marks), WithClientBinding(false))
	c, _ := seal(bound, nil, alice)
	bob, _ := seal(bound, nil, Expect{Service: "cart", Client: "bob"})
	clk.Advance(time.Millisecond)
	if err := replica.Revoke(ctx, Revocation{Client: "alice"}); err != nil {
		t.Fatal(err)
	}
	_, err = seal(bound, c, alice)
	wantCode(t, err, CodeRevoked)
	if _, err := seal(bound, bob, Expect{Service: "cart", Client: "bob"}); err != nil {
		t.Fatalf("bob: %v", err)
	}
	clk.Advance(time.Millisecond)
	if _, err := seal(bound, nil, alice); err != nil {
		t.Fatalf("alice's new session: %v", err)
	}

	// Re-sealing does not make a session younger.
	for range 3 {
		clk.Advance(20 * time.Minute)
		var next []byte
		if next, err = seal(s, b, Expect{Service: "cart"}); err != nil {
			break
		}
		b = next
	}
	wantCode(t, err, CodeSessionExpired)
	_, err = replica.Restore(ctx, b, Expect{Service: "cart"}, "/")
	wantCode(t, err, CodeSessionExpired)
}

// TestBindingFailsClosed: with binding on, a request without an identity
// and an unbound SCONE are refused; bind-on-first-use binds the latter.
func TestBindingFailsClosed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	plain, _ := newTestSealer(t)
	unbound := nil0(t, plain)
	for _, firstUse := range []bool{false, true} {
		s, _ := newTestSealer(t, WithClientBinding(firstUse))
		_, err := s.Restore(ctx, nil, Expect{Service: "cart"}, "/")
		wantCode(t, err, CodeWrongClient)
		_, err = s.Restore(ctx, unbound, Expect{Service: "cart"}, "/")
		wantCode(t, err, CodeWrongClient)
		st, err := s.Restore(ctx, unbound, Expect{Service: "cart", Client: "alice"}, "/")
		if !firstUse {
			wantCode(t, err, CodeWrongClient)
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		_, tok, err := s.Commit(nil, st)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.Restore(ctx, tok, Expect{Service: "cart", Client: "mallory"}, "/")
		wantCode(t, err, CodeWrongClient)
	}
}
