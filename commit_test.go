package scone

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

// serve runs one request the way a hook does: restore, handler, commit.
func serve(t *testing.T, s *Sealer, token []byte, want Expect, handler func(ctx context.Context)) (Outcome, []byte) {
	t.Helper()
	st, err := s.Restore(context.Background(), token, want, "/shop.Cart/")
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	handler(NewContext(context.Background(), st))
	out, tok, err := s.Commit(nil, st)
	if err != nil {
		t.Fatalf("Commit: %v", err)
	}
	return out, tok
}

func TestSessionLifecycle(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t, WithResealUnchanged(false), WithTTL(time.Hour))
	want := Expect{Service: "cart", Client: "alice"}

	// A first call that changes nothing seals nothing.
	out, _ := serve(t, s, nil, want, func(ctx context.Context) {
		st, ok := FromContext(ctx)
		if !ok || st.restored || st.Data() != nil || st.Version() != 0 {
			t.Fatal("first call does not see an empty state")
		}
	})
	if out != Unchanged {
		t.Fatalf("first call without changes: %v", out)
	}

	// A first call that sets state starts a session at version 1.
	out, tok1 := serve(t, s, nil, want, func(ctx context.Context) {
		st, _ := FromContext(ctx)
		st.SetData([]byte("1 book"))
		// The patent's thread-context fields, which no State method sets:
		// they must survive every later seal all the same.
		st.sc.Object, st.sc.Status, st.sc.Endpoint = "cart-7", "open", "shard-3"
	})
	h1, _ := ParseHeader(tok1)
	if out != Updated || h1.Version != 1 || h1.Service != "cart" || h1.Scope != "/shop.Cart/" {
		t.Fatalf("new session: %v, header %+v", out, h1)
	}

	// The next call sees it, and its change makes version 2.
	var session SessionID
	out, tok2 := serve(t, s, tok1, want, func(ctx context.Context) {
		st, _ := FromContext(ctx)
		if !st.restored || string(st.Data()) != "1 book" || st.sc.Object != "cart-7" ||
			st.sc.Status != "open" || st.sc.Endpoint != "shard-3" || st.Version() != 1 ||
			st.want.Service != "cart" || st.want.Client != "alice" {
			t.Fatalf("restored state is wrong: %q %q %q v%d", st.Data(), st.sc.Object, st.sc.Status, st.Version())
		}
		session = st.sc.Session
		st.SetData([]byte("2 books"))
	})
	if h2, _ := ParseHeader(tok2); out != Updated || h2.Version != 2 {
		t.Fatalf("second call: %v v%d", out, h2.Version)
	}

	// A read-only call with re-sealing off sends nothing back...
	out, _ = serve(t, s, tok2, want, func(ctx context.Context) {
		st, _ := FromContext(ctx)
		if st.sc.Session != session {
			t.Fatal("session ID changed across versions")
		}
	})
	if out != Unchanged {
		t.Fatalf("read-only call: %v", out)
	}
	// ...until the SCONE is past half its lifetime, when it slides.
	clk.Advance(31 * time.Minute)
	out, tok3 := serve(t, s, tok2, want, func(context.Context) {})
	if h3, _ := ParseHeader(tok3); out != Updated || !h3.Expires.Equal(clk.Now().Add(time.Hour)) {
		t.Fatalf("half-life re-seal: %v, expires %v", out, h3.Expires)
	}

	// Drop ends the session.
	out, _ = serve(t, s, tok3, want, func(ctx context.Context) {
		st, _ := FromContext(ctx)
		st.SetData([]byte("ignored"))
		st.Drop()
		if changed, dropped, _ := st.flags(); !dropped || changed {
			t.Fatal("Drop did not take")
		}
	})
	if out != Dropped {
		t.Fatalf("drop: %v", out)
	}
}

func TestUpdateInPlace(t *testing.T) {
	t.Parallel()
	s, _ := newTestSealer(t)
	want := Expect{Service: "cart"}
	_, tok := serve(t, s, nil, want, func(ctx context.Context) {
		st, _ := FromContext(ctx)
		st.Update(func(d []byte) []byte { return append(d, "abc"...) })
	})
	_, tok = serve(t, s, tok, want, func(ctx context.Context) {
		st, _ := FromContext(ctx)
		st.Update(func(d []byte) []byte {
			d[0] = 'A'
			return d
		})
		if changed, _, _ := st.flags(); !changed {
			t.Fatal("Update did not mark the state changed")
		}
	})
	serve(t, s, tok, want, func(ctx context.Context) {
		st, _ := FromContext(ctx)
		if got := string(st.Data()); got != "Abc" {
			t.Fatalf("data after two updates: %q", got)
		}
	})
}

func TestResealUnchangedByDefault(t *testing.T) {
	t.Parallel()
	s, _ := newTestSealer(t)
	want := Expect{Service: "cart"}
	_, tok1 := serve(t, s, nil, want, func(ctx context.Context) {
		st, _ := FromContext(ctx)
		st.SetData([]byte("x"))
	})
	out, tok2 := serve(t, s, tok1, want, func(context.Context) {})
	h1, _ := ParseHeader(tok1)
	h2, _ := ParseHeader(tok2)
	if out != Updated || h2.Version != h1.Version+1 || string(tok1) == string(tok2) {
		t.Fatalf("read-only call with the default options: %v v%d→v%d", out, h1.Version, h2.Version)
	}
}

func TestSetTTLShortensOnly(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t, WithTTL(time.Hour))
	for _, tc := range []struct{ set, want time.Duration }{
		{time.Minute, time.Minute},
		{2 * time.Hour, time.Hour},
		{0, time.Hour},
	} {
		_, tok := serve(t, s, nil, Expect{Service: "cart"}, func(ctx context.Context) {
			st, _ := FromContext(ctx)
			st.SetData([]byte("x"))
			st.SetTTL(tc.set)
		})
		h, _ := ParseHeader(tok)
		if got := h.Expires.Sub(clk.Now()); got != tc.want {
			t.Errorf("SetTTL(%v): lifetime %v, want %v", tc.set, got, tc.want)
		}
	}
}

func TestClientBinding(t *testing.T) {
	t.Parallel()
	s, _ := newTestSealer(t, WithClientBinding(false))
	_, tok := serve(t, s, nil, Expect{Service: "cart", Client: "alice"}, func(ctx context.Context) {
		st, _ := FromContext(ctx)
		st.SetData([]byte("x"))
	})
	if _, err := s.Restore(context.Background(), tok, Expect{Service: "cart", Client: "alice"}, ""); err != nil {
		t.Fatalf("owner: %v", err)
	}
	_, err := s.Restore(context.Background(), tok, Expect{Service: "cart", Client: "bob"}, "")
	wantCode(t, err, CodeWrongClient)
}

func TestEpochStampedAtCommit(t *testing.T) {
	t.Parallel()
	marks := NewMemoryMarkStore(100, newFakeClock().Now)
	s, _ := newTestSealer(t, WithMarkStore(marks))
	ctx := context.Background()
	for range 4 {
		if err := s.Revoke(ctx, Revocation{Service: "cart"}); err != nil {
			t.Fatal(err)
		}
	}
	_, tok := serve(t, s, nil, Expect{Service: "cart"}, func(ctx context.Context) {
		st, _ := FromContext(ctx)
		st.SetData([]byte("x"))
	})
	var sc SCONE
	if _, err := s.open(ctx, &sc, tok, Expect{Service: "cart"}); err != nil || sc.Epoch != 4 {
		t.Fatalf("epoch %d, %v", sc.Epoch, err)
	}
	if err := s.Revoke(ctx, Revocation{Service: "cart"}); err != nil {
		t.Fatal(err)
	}
	_, err := s.open(ctx, &sc, tok, Expect{Service: "cart"})
	wantCode(t, err, CodeRevoked)
	if e, _ := s.epoch(ctx, "inventory"); e != 0 {
		t.Fatal("revoking cart touched inventory")
	}
	noStore, _ := newTestSealer(t)
	wantCode(t, noStore.Revoke(ctx, Revocation{Service: "cart"}), CodeInternal)
}

type cart struct {
	Items []string `json:"items"`
}

func TestTypedJSON(t *testing.T) {
	t.Parallel()
	s, _ := newTestSealer(t)
	state := NewTyped(JSONCodec[cart]())
	want := Expect{Service: "cart"}
	_, tok := serve(t, s, nil, want, func(ctx context.Context) {
		c, ok, err := state.Load(ctx)
		if err != nil || ok || len(c.Items) != 0 {
			t.Fatalf("first Load = %v %v %v", c, ok, err)
		}
		c.Items = append(c.Items, "dune")
		if err := state.Store(ctx, c); err != nil {
			t.Fatal(err)
		}
	})
	serve(t, s, tok, want, func(ctx context.Context) {
		c, ok, err := state.Load(ctx)
		if err != nil || !ok || len(c.Items) != 1 || c.Items[0] != "dune" {
			t.Fatalf("second Load = %v %v %v", c, ok, err)
		}
	})
	// Data that is not JSON of a cart fails clearly, and a failed Store keeps the data.
	serve(t, s, tok, want, func(ctx context.Context) {
		st, _ := FromContext(ctx)
		st.SetData([]byte("{not json"))
		if _, _, err := state.Load(ctx); CodeOf(err) != CodeMalformed {
			t.Fatalf("Load of bad data: %v", err)
		}
		bad := NewTyped(JSONCodec[func()]())
		if err := bad.Store(ctx, func() {}); CodeOf(err) != CodeInternal {
			t.Fatalf("Store of an unencodable value: %v", err)
		}
		if string(st.Data()) != "{not json" {
			t.Fatalf("a failed Store changed the data to %q", st.Data())
		}
	})
}

func TestTypedProto(t *testing.T) {
	t.Parallel()
	s, _ := newTestSealer(t)
	state := NewTyped(ProtoCodec[*structpb.Struct]())
	want := Expect{Service: "cart"}
	_, tok := serve(t, s, nil, want, func(ctx context.Context) {
		v, _ := structpb.NewStruct(map[string]any{"items": []any{"dune"}, "total": 12.5})
		if err := state.Store(ctx, v); err != nil {
			t.Fatal(err)
		}
	})
	serve(t, s, tok, want, func(ctx context.Context) {
		v, ok, err := state.Load(ctx)
		if err != nil || !ok || v.Fields["total"].GetNumberValue() != 12.5 {
			t.Fatalf("Load = %v %v %v", v, ok, err)
		}
	})
}

func TestCodeNames(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for c := Code(1); int(c) < len(codeNames); c++ {
		name := c.String()
		if seen[name] {
			t.Errorf("duplicate code name %q", name)
		}
		seen[name] = true
	}
	if Code(200).String() != "code_200" {
		t.Error("undefined code name")
	}
	if CodeOf(nil) != CodeUnknown || CodeOf(context.Canceled) != CodeUnknown {
		t.Error("CodeOf of a foreign error")
	}
}

// TestFailedCommitLeavesState: a seal that fails (over the budget) leaves
// the State as it was, so a retry does not skip a version.
func TestFailedCommitLeavesState(t *testing.T) {
	t.Parallel()
	s, _ := newTestSealer(t, WithMaxSize(400))
	want := Expect{Service: "cart"}
	_, tok := serve(t, s, nil, want, func(ctx context.Context) {
		st, _ := FromContext(ctx)
		st.SetData([]byte("small"))
	})
	st, err := s.Restore(context.Background(), tok, want, "/shop.Cart/")
	if err != nil {
		t.Fatal(err)
	}
	st.SetData(make([]byte, 1000))
	if _, _, err := s.Commit(nil, st); CodeOf(err) != CodeTooLarge {
		t.Fatalf("Commit over the budget: %v", err)
	}
	if st.Version() != 1 {
		t.Fatalf("a failed commit moved the version to %d", st.Version())
	}
	st.SetData([]byte("fits"))
	_, tok2, err := s.Commit(nil, st)
	if h, _ := ParseHeader(tok2); err != nil || h.Version != 2 {
		t.Fatalf("commit after the failure: v%d, %v", h.Version, err)
	}
}

func TestFreeze(t *testing.T) {
	t.Parallel()
	st := newState(Expect{Service: "cart"}, "/")
	st.SetData([]byte("before"))
	st.freeze()
	for name, change := range map[string]func(){
		"SetData": func() { st.SetData([]byte("after")) },
		"Drop":    st.Drop,
		"Update":  func() { st.Update(func(d []byte) []byte { return d }) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || CodeOf(r.(error)) != CodeInternal {
					t.Errorf("%s after Freeze: recovered %v", name, r)
				}
			}()
			change()
		}()
	}
	if string(st.Data()) != "before" {
		t.Fatal("a frozen state changed")
	}
}
