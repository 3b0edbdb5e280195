package scone

import (
	"bytes"
	"context"
	"encoding/hex"
	"testing"
	"time"

	"github.com/scone-project/scone/internal/badinput"
)

// fuzzSeeds returns envelopes to start the fuzzers from: the golden
// vectors, and the envelopes of the bad-input corpus up to 4 KiB.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, v := range vectorInputs() {
		env, err := v.sealer(t).sealNonce(nil, v.scone(t), (*[nonceSize]byte)(mustHex(t, v.Nonce)), v.Format)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, env)
	}
	c, err := badinput.Load(badInputDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, cs := range c.Cases {
		if cs.Carrier == badinput.Envelope && len(cs.Payloads[0]) <= 4<<10 {
			seeds = append(seeds, cs.Payloads...)
		}
	}
	return seeds
}

// fuzzSealer opens with key 1 at t0, so seals of sampleSCONE(t0) open.
func fuzzSealer(t testing.TB) *Sealer {
	ring, err := NewKeyRing(1, testKey(1))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSealer(ring, WithClock(func() time.Time { return t0 }), WithCompression(32))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// FuzzParseHeader: any bytes either fail with a code or parse into a header
// that encodes back to the same bytes.
func FuzzParseHeader(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHeader(b)
		if err != nil {
			if c := CodeOf(err); c != CodeMalformed && c != CodeTooLarge {
				t.Fatalf("ParseHeader error with code %v: %v", c, err)
			}
			return
		}
		v, _ := parseHeader(b)
		sc := SCONE{Service: h.Service, Scope: h.Scope, Version: h.Version, Expires: h.Expires}
		if got := appendHeader(nil, h.Format, h.KeyID, &sc); !bytes.Equal(got, b[:v.end]) {
			t.Fatalf("header re-encodes as %x, was %x", got, b[:v.end])
		}
	})
}

// FuzzOpen: arbitrary bytes never open unless they are a valid seal, and
// every failure has a code from the open path.
func FuzzOpen(f *testing.F) {
	s := fuzzSealer(f)
	for _, seed := range fuzzSeeds(f) {
		f.Add(seed)
	}
	for _, size := range []int{0, 40, 300} {
		sc := sampleSCONE(t0, bytes.Repeat([]byte("ab"), size))
		f.Add(mustSeal(f, s, sc))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var sc SCONE
		_, err := s.open(context.Background(), &sc, b, Expect{Service: "cart"})
		if err != nil {
			switch CodeOf(err) {
			case CodeMalformed, CodeTampered, CodeUnknownKey, CodeTooLarge, CodeWrongService, CodeExpired:
			default:
				t.Fatalf("Open error with unexpected code: %v", err)
			}
			return
		}
		// It opened: it must survive a re-seal unchanged.
		again, err := s.seal(nil, &sc)
		if err != nil {
			t.Fatalf("re-seal of an opened SCONE: %v", err)
		}
		var sc2 SCONE
		if _, err := s.open(context.Background(), &sc2, again, Expect{Service: "cart"}); err != nil || !sconeEqual(&sc, &sc2) {
			t.Fatalf("re-sealed SCONE does not open the same: %v", err)
		}
	})
}

// FuzzDecodeBody: the body decoder, which runs only on authenticated bytes,
// still never panics, and what it accepts encodes back to the same bytes.
func FuzzDecodeBody(f *testing.F) {
	sc := sampleSCONE(t0, []byte("data"))
	f.Add(appendBody(nil, formatV2, 0, sc, sc.Data))
	f.Add(appendBody(nil, formatV2, flagDeflate, sc, deflate(nil, []byte("data data data"))))
	f.Add(make([]byte, bodyMinV2))
	f.Fuzz(func(t *testing.T, b []byte) {
		var sc SCONE
		flags, data, err := decodeBody(&sc, formatV2, b)
		if err != nil {
			wantCode(t, err, CodeMalformed)
			return
		}
		if got := appendBody(nil, formatV2, flags, &sc, data); !bytes.Equal(got, b) {
			t.Fatalf("body re-encodes as %x, was %x", got, b)
		}
	})
}

// FuzzInflate: compressed data from an authenticated body never inflates
// past the limit and never panics.
func FuzzInflate(f *testing.F) {
	f.Add(deflate(nil, []byte("hello hello hello")))
	f.Add(deflate(nil, make([]byte, 1<<16)))
	f.Add([]byte{0xff, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := inflate(nil, b, 4096)
		if err != nil {
			if c := CodeOf(err); c != CodeMalformed && c != CodeTooLarge {
				t.Fatalf("inflate error with code %v", c)
			}
			return
		}
		if len(out) > 4096 {
			t.Fatalf("inflated %d bytes past the limit", len(out))
		}
	})
}

// FuzzParseKeyFile: what the key file parser accepts survives a round trip.
func FuzzParseKeyFile(f *testing.F) {
	f.Add(marshalKeyFile(2, []Key{testKey(1), testKey(2)}))
	f.Add([]byte(`{"format":"scone-keys-v1","primary":1,"keys":[{"id":1,"secret":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		primary, keys, err := ParseKeyFile(b)
		if err != nil {
			if c := CodeOf(err); c != CodeMalformed && c != CodeTooLarge {
				t.Fatalf("ParseKeyFile error with code %v", c)
			}
			return
		}
		p2, keys2, err := ParseKeyFile(marshalKeyFile(primary, keys))
		if err != nil || p2 != primary || len(keys2) != len(keys) {
			t.Fatalf("key file does not survive a round trip: %v", err)
		}
		for i := range keys {
			if keys[i].ID != keys2[i].ID || keys[i].Secret != keys2[i].Secret {
				t.Fatalf("key %d changed in a round trip", keys[i].ID)
			}
		}
		if _, err := NewKeyRing(primary, keys...); err != nil {
			t.Fatalf("a parsed key file does not make a ring: %v", err)
		}
	})
}

// FuzzDecodeText: the text form decodes only from canonical unpadded
// base64url, which encodes back to the same text.
func FuzzDecodeText(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(EncodeText(s))
	}
	f.Add("AQ==")
	f.Add(hex.EncodeToString([]byte("x")))
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeText(s)
		if err != nil {
			if c := CodeOf(err); c != CodeMalformed && c != CodeTooLarge {
				t.Fatalf("DecodeText error with code %v", c)
			}
			return
		}
		if got := EncodeText(b); got != s {
			t.Fatalf("text %q decodes and re-encodes as %q", s, got)
		}
	})
}
