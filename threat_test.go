package scone

import (
	"bytes"
	"context"
	"encoding/base64"
	"testing"
)

// TestHolderCannotReadState: a holder of a SCONE sees its cleartext header
// and nothing of the state: neither the data, in any encoding a holder
// might try, nor the other sealed fields.
func TestHolderCannotReadState(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	secret := []byte("card=4111111111111111;note=the state a holder must not read")
	sc := sampleSCONE(clk.Now(), secret)
	sc.Object, sc.Endpoint, sc.Status = "order-6ba7b810", "10.1.2.3:7101", "checkout-pending"
	tok := mustSeal(t, s, sc)
	text := EncodeText(tok)
	for _, part := range [][]byte{secret, secret[:8], []byte(sc.Object), []byte(sc.Endpoint), []byte(sc.Status)} {
		if bytes.Contains(tok, part) || bytes.Contains([]byte(text), []byte(base64.RawURLEncoding.EncodeToString(part))) {
			t.Errorf("the sealed SCONE shows %q", part)
		}
	}
	// What the header shows is what holders need to route and evict.
	h, err := ParseHeader(tok)
	if err != nil || h.Service != sc.Service || h.Scope != sc.Scope || h.Version != sc.Version {
		t.Fatalf("header %+v, %v", h, err)
	}
}

// TestForgedSCONERefused: a holder cannot make a SCONE the server accepts
// without a key of its ring: one sealed with another key under the ring's
// key ID is tampered, one under an ID the ring lacks is unknown_key, and
// one whose header was rewritten to another service or a later version is
// tampered.
func TestForgedSCONERefused(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	want := Expect{Service: "cart"}
	forger := func(id uint32, secretFrom uint32) *Sealer {
		k := testKey(secretFrom)
		k.ID = id
		ring, err := NewKeyRing(id, k)
		if err != nil {
			t.Fatal(err)
		}
		f, err := NewSealer(ring, WithClock(clk.Now))
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for _, tc := range []struct {
		name string
		tok  []byte
		code Code
	}{
		{"another key under the ring's key ID", mustSeal(t, forger(1, 9), sampleSCONE(clk.Now(), []byte("x"))), CodeTampered},
		{"a key ID the ring lacks", mustSeal(t, forger(9, 9), sampleSCONE(clk.Now(), []byte("x"))), CodeUnknownKey},
	} {
		var got SCONE
		if _, err := s.open(context.Background(), &got, tc.tok, want); CodeOf(err) != tc.code {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.code)
		}
	}
	// A genuine SCONE whose cleartext header is rewritten.
	tok := mustSeal(t, s, sampleSCONE(clk.Now(), []byte("x")))
	h, err := ParseHeader(tok)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(tok, []byte(h.Service))
	bumped := bytes.Clone(tok)
	bumped[i] = 'k' // "cart" → "kart"
	var got SCONE
	if _, err := s.open(context.Background(), &got, bumped, Expect{Service: "kart"}); CodeOf(err) != CodeTampered {
		t.Errorf("a header rewritten to another service: %v, want tampered", err)
	}
}
