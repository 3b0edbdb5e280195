package hook

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/scone-project/scone"
)

// tier serves one request of service with tokens through the exchange and
// calls the back ends in calls (route → back-end service) for it; it
// returns the reply.
func tier(t *testing.T, s *scone.Sealer, service string, tokens [][]byte, calls map[string]string) (Reply, error) {
	t.Helper()
	ctx := context.Background()
	x, err := Begin(s, ctx, Incoming{SCONEs: tokens, Expect: scone.Expect{Service: service}, Scope: "/g/"})
	if err != nil {
		return Reply{}, err
	}
	x.State().SetData([]byte("x"))
	c, _ := CarryFrom(x.Context())
	for route, back := range calls {
		bx, err := Begin(s, ctx, Incoming{SCONEs: c.Attach(nil, route), Expect: scone.Expect{Service: back}, Scope: c.Scope()})
		if err != nil {
			return Reply{}, err
		}
		bx.State().SetData([]byte("y"))
		br, err := bx.Finish(nil, false)
		if err != nil {
			return Reply{}, err
		}
		if err := c.Apply(route, br.Dropped, br.SCONEs); err != nil {
			return Reply{}, err
		}
	}
	return x.Finish(nil, false)
}

// holder keeps the newest token of each service, as a client's Dict.
type holder map[string][]byte

func (h holder) apply(t *testing.T, r Reply) {
	t.Helper()
	for _, tok := range r.SCONEs {
		v, err := Peek(tok)
		if err != nil {
			t.Fatal(err)
		}
		h[string(v.Service)] = tok
	}
}

func (h holder) tokens(skip ...string) [][]byte {
	var out [][]byte
next:
	for svc, tok := range h {
		for _, s := range skip {
			if s == svc {
				continue next
			}
		}
		out = append(out, tok)
	}
	return out
}

// TestBundle: the front end's SCONE records the back ends' SCONEs its reply
// left with the holder; a missing, older or foreign one is refused with
// CodeBundle, never served from an empty state.
func TestBundle(t *testing.T) {
	t.Parallel()
	s, _ := newTestSealer(t)
	calls := map[string]string{"/cart/": "cart", "/inv/": "inventory"}
	h := holder{}
	r, err := tier(t, s, "gateway", nil, calls)
	if err != nil {
		t.Fatal(err)
	}
	h.apply(t, r)
	old := holder{}
	for k, v := range h {
		old[k] = v
	}
	r, err = tier(t, s, "gateway", h.tokens(), calls)
	if err != nil {
		t.Fatal(err)
	}
	h.apply(t, r)

	// Another session's cart SCONE.
	other := holder{}
	r, _ = tier(t, s, "gateway", nil, calls)
	other.apply(t, r)

	for _, tc := range []struct {
		name   string
		tokens [][]byte
	}{
		{"missing", h.tokens("cart")},
		{"older", append(h.tokens("cart"), old["cart"])},
		{"foreign", append(h.tokens("cart"), other["cart"])},
		{"without the front end's", h.tokens("gateway")},
	} {
		_, err := tier(t, s, "gateway", tc.tokens, calls)
		if tc.name == "without the front end's" {
			// A new session, unless the transport asks for bundles
			// (Incoming.Bundles): see TestBundleRequired.
			continue
		}
		if scone.CodeOf(err) != scone.CodeBundle {
			t.Errorf("%s: %v, want bundle_mismatch", tc.name, err)
		}
	}
	if _, err := tier(t, s, "gateway", h.tokens(), calls); err != nil {
		t.Fatalf("the whole bundle: %v", err)
	}
}

func TestBundleRequired(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	cart := sealHdr(t, s, "cart", "/g/", 3, clk.Now().Add(time.Hour))
	_, err := Begin(s, context.Background(), Incoming{SCONEs: [][]byte{cart},
		Expect: scone.Expect{Service: "gateway"}, Scope: "/g/", Bundles: true})
	if scone.CodeOf(err) != scone.CodeBundle {
		t.Fatalf("back-end SCONEs without the front end's: %v", err)
	}
}

// TestCarryScoped: a back-end SCONE goes only with calls on the route it
// came back from, and a reply on another route cannot change or drop it.
func TestCarryScoped(t *testing.T) {
	t.Parallel()
	s, _ := newTestSealer(t)
	calls := map[string]string{"/cart/": "cart", "/inv/": "inventory"}
	h := holder{}
	r, err := tier(t, s, "gateway", nil, calls)
	if err != nil {
		t.Fatal(err)
	}
	h.apply(t, r)
	x, err := Begin(s, context.Background(), Incoming{SCONEs: h.tokens(), Expect: scone.Expect{Service: "gateway"}, Scope: "/g/"})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := CarryFrom(x.Context())
	for route, svc := range calls {
		got := c.Attach(nil, route)
		if len(got) != 1 {
			t.Fatalf("route %s gets %d SCONEs, want 1", route, len(got))
		}
		if v, _ := Peek(got[0]); string(v.Service) != svc {
			t.Fatalf("route %s gets %s's SCONE", route, v.Service)
		}
	}
	// The inventory back end tries to replace and to drop the cart's SCONE.
	forged := sealHdr(t, s, "cart", "/g/", 1<<40, t0.Add(time.Hour))
	if err := c.Apply("/inv/", nil, [][]byte{forged}); !errors.Is(err, ErrForeignSCONE) {
		t.Fatalf("replace another route's SCONE: %v", err)
	}
	if err := c.Apply("/inv/", []HolderKey{{Service: "cart", Scope: "/g/"}}, nil); !errors.Is(err, ErrForeignSCONE) {
		t.Fatalf("drop another route's SCONE: %v", err)
	}
	if c.Refused() != 2 {
		t.Fatalf("Refused = %d, want 2", c.Refused())
	}
	if drop, put := c.Changes(); len(drop)+len(put) != 0 {
		t.Fatal("a refused reply changed the carry")
	}
}
