package hook

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scone-project/scone"
)

// TestExchangeMultiTier plays a front end and its back end by hand: the
// front end's own SCONE is restored, the back end's rides in the carry, the
// back end's new version comes back through the front end's reply.
func TestExchangeMultiTier(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	exp := clk.Now().Add(time.Hour)
	gw := sealHdr(t, s, "gateway", "/g/", 3, exp)
	cart := sealHdr(t, s, "cart", "/g/", 7, exp)
	ctx := context.Background()

	x, err := Begin(s, ctx, Incoming{SCONEs: [][]byte{cart, gw}, Expect: scone.Expect{Service: "gateway"}, Scope: "/g/"})
	if err != nil {
		t.Fatal(err)
	}
	if x.State().Version() != 3 {
		t.Fatalf("front end restored version %d", x.State().Version())
	}
	c, ok := CarryFrom(x.Context())
	if !ok || c.Scope() != "/g/" || len(c.Attach(nil, "r")) != 1 {
		t.Fatal("the carry does not hold the back end's SCONE")
	}
	// The back end serves a call made for this request.
	bx, err := Begin(s, ctx, Incoming{SCONEs: c.Attach(nil, "r"), Expect: scone.Expect{Service: "cart"}, Scope: c.Scope()})
	if err != nil {
		t.Fatal(err)
	}
	bx.State().SetData([]byte("2 books"))
	br, err := bx.Finish(nil, false)
	if err != nil || len(br.SCONEs) != 1 {
		t.Fatalf("back end reply: %+v %v", br, err)
	}
	if err := c.Apply("r", br.Dropped, br.SCONEs); err != nil {
		t.Fatal(err)
	}
	r, err := x.Finish(nil, false)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, tok := range r.SCONEs {
		h, _ := scone.ParseHeader(tok)
		got[h.Service] = h.Version
		if h.Scope != "/g/" {
			t.Errorf("%s sealed with scope %q", h.Service, h.Scope)
		}
	}
	if got["gateway"] != 4 || got["cart"] != 8 {
		t.Fatalf("reply versions %v, want gateway 4 and cart 8", got)
	}
	// A failed handler sends nothing back.
	x2, _ := Begin(s, ctx, Incoming{SCONEs: [][]byte{gw}, Expect: scone.Expect{Service: "gateway"}, Scope: "/g/"})
	x2.State().SetData([]byte("lost on purpose"))
	if r, err := x2.Finish(nil, true); err != nil || !r.Empty() {
		t.Fatalf("failed handler: %+v %v", r, err)
	}
}

func TestExchangePlainAndReset(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	ctx := context.Background()
	x, err := Begin(s, ctx, Incoming{Expect: scone.Expect{Service: "cart"}, Scope: "/c/", Plain: true})
	if err != nil {
		t.Fatal(err)
	}
	x.State().SetData([]byte("never sealed"))
	if r, _ := x.Finish(nil, false); !r.Empty() {
		t.Fatal("a plain exchange sealed state")
	}
	if c, _ := CarryFrom(x.Context()); !c.Plain() {
		t.Fatal("a plain exchange's carry is not plain")
	}

	bad := sealHdr(t, s, "cart", "/c/", 5, clk.Now().Add(time.Hour))
	bad[len(bad)-1] ^= 1
	if _, err := Begin(s, ctx, Incoming{SCONEs: [][]byte{bad}, Expect: scone.Expect{Service: "cart"}, Scope: "/c/"}); scone.CodeOf(err) != scone.CodeTampered {
		t.Fatalf("tampered without reset: %v", err)
	}
	x, err = Begin(s, ctx, Incoming{SCONEs: [][]byte{bad}, Expect: scone.Expect{Service: "cart"}, Scope: "/c/", ResetOnFailure: true})
	if err != nil {
		t.Fatal(err)
	}
	x.State().SetData([]byte("fresh"))
	r, err := x.Finish(nil, false)
	if err != nil || len(r.Dropped) != 1 || r.Dropped[0] != (HolderKey{Service: "cart", Scope: "/c/"}) || len(r.SCONEs) != 1 {
		t.Fatalf("reset reply: %+v %v", r, err)
	}
}

func TestCarryApply(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	exp := clk.Now().Add(time.Hour)
	c, err := NewCarry("/g/", [][]byte{sealHdr(t, s, "inventory", "/g/", 2, exp)})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply("r", []HolderKey{{Service: "cart", Scope: "/g/"}}, nil); !errors.Is(err, ErrForeignDrop) {
		t.Fatalf("foreign drop: %v", err)
	}
	if err := c.Apply("r", nil, [][]byte{sealHdr(t, s, "inventory", "/g/", 1, exp)}); err != nil {
		t.Fatal(err)
	}
	if drop, put := c.Changes(); len(drop)+len(put) != 0 {
		t.Fatal("an older version counted as a change")
	}
	if err := c.Apply("r", []HolderKey{{Service: "inventory", Scope: "/g/"}}, nil); err != nil {
		t.Fatal(err)
	}
	if drop, _ := c.Changes(); len(drop) != 1 {
		t.Fatal("the drop is not sent up")
	}
	if err := c.Apply("r", nil, [][]byte{[]byte("junk")}); scone.CodeOf(err) != scone.CodeMalformed {
		t.Fatalf("junk: %v", err)
	}
	if _, err := NewCarry("/g/", [][]byte{[]byte("junk")}); scone.CodeOf(err) != scone.CodeMalformed {
		t.Fatalf("junk passenger: %v", err)
	}
}

func TestTurns(t *testing.T) {
	t.Parallel()
	var turns Turns[string]
	release, err := turns.Take(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	// Another key is free; the same key waits, bounded by its context.
	other, err := turns.Take(context.Background(), "b")
	if err != nil {
		t.Fatal(err)
	}
	other()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := turns.Take(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second turn of a held key: %v", err)
	}
	done := make(chan struct{})
	go func() {
		r, err := turns.Take(context.Background(), "a")
		if err == nil {
			r()
		}
		close(done)
	}()
	release()
	<-done
	turns.mu.Lock()
	n := len(turns.m)
	turns.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d idle keys kept", n)
	}
}
