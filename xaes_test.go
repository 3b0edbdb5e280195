package scone

import (
	"bytes"
	"crypto/sha3"
	"encoding/hex"
	"testing"
)

// xaesSeal and xaesOpen run XAES-256-GCM with an explicit nonce, uncached.
func xaesSeal(key, nonce, plaintext, aad []byte) []byte {
	k := newXAESKey((*[keySize]byte)(key))
	return k.derive((*[prefixSize]byte)(nonce)).aead.Seal(nil, nonce[prefixSize:], plaintext, aad)
}

func xaesOpen(key, nonce, ciphertext, aad []byte) ([]byte, error) {
	k := newXAESKey((*[keySize]byte)(key))
	return k.derive((*[prefixSize]byte)(nonce)).aead.Open(nil, nonce[prefixSize:], ciphertext, aad)
}

// TestXAESVectors checks the test vectors of https://c2sp.org/XAES-256-GCM.
func TestXAESVectors(t *testing.T) {
	t.Parallel()
	nonce := []byte("ABCDEFGHIJKLMNOPQRSTUVWX")
	plaintext := []byte("XAES-256-GCM")
	for _, tc := range []struct {
		key  byte
		aad  string
		want string
	}{
		{0x01, "", "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271"},
		{0x03, "c2sp.org/XAES-256-GCM", "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d"},
	} {
		key := bytes.Repeat([]byte{tc.key}, keySize)
		ct := xaesSeal(key, nonce, plaintext, []byte(tc.aad))
		if got := hex.EncodeToString(ct); got != tc.want {
			t.Errorf("key %#x: got %s, want %s", tc.key, got, tc.want)
		}
		pt, err := xaesOpen(key, nonce, ct, []byte(tc.aad))
		if err != nil || !bytes.Equal(pt, plaintext) {
			t.Errorf("key %#x: open = %q, %v", tc.key, pt, err)
		}
	}
}

// TestXAESAccumulated runs the accumulated C2SP vector: 10,000 seals of
// SHAKE-128-generated inputs, hashed.
func TestXAESAccumulated(t *testing.T) {
	t.Parallel()
	const want = "e6b9edf2df6cec60c8cbd864e2211b597fb69a529160cd040d56c0c210081939"
	s, d := sha3.NewSHAKE128(), sha3.NewSHAKE128()
	for range 10_000 {
		key := make([]byte, keySize)
		s.Read(key)
		nonce := make([]byte, nonceSize)
		s.Read(nonce)
		n := make([]byte, 1)
		s.Read(n)
		plaintext := make([]byte, int(n[0]))
		s.Read(plaintext)
		s.Read(n)
		aad := make([]byte, int(n[0]))
		s.Read(aad)
		ct := xaesSeal(key, nonce, plaintext, aad)
		pt, err := xaesOpen(key, nonce, ct, aad)
		if err != nil || !bytes.Equal(pt, plaintext) {
			t.Fatalf("round trip failed: %v", err)
		}
		d.Write(ct)
	}
	sum := make([]byte, 32)
	d.Read(sum)
	if got := hex.EncodeToString(sum); got != want {
		t.Fatalf("accumulated hash %s, want %s", got, want)
	}
}

// TestSealNoncePrefixRotates checks that a sealer draws a new nonce prefix
// after prefixUses seals (lowered here to 1000), and that nonces never repeat.
func TestSealNoncePrefixRotates(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	const prefixUses = 1000
	s.ring.state.Load().primary.x.prefixUses = prefixUses
	sc := sampleSCONE(clk.Now(), []byte("x"))
	prefixes := map[string]int{}
	suffixes := map[string]bool{} // whole nonces
	var buf []byte
	for i := range prefixUses + 10 {
		var err error
		buf, err = s.seal(buf[:0], sc)
		if err != nil {
			t.Fatal(err)
		}
		h, _ := parseHeader(buf)
		nonce := buf[h.end : h.end+nonceSize]
		prefixes[string(nonce[:prefixSize])]++
		if suffixes[string(nonce)] {
			t.Fatalf("seal %d repeated a nonce", i)
		}
		suffixes[string(nonce)] = true
	}
	if len(prefixes) != 2 {
		t.Fatalf("got %d nonce prefixes over %d seals, want 2", len(prefixes), prefixUses+10)
	}
	for p, n := range prefixes {
		if n > prefixUses {
			t.Errorf("prefix %x used %d times, over %d", p, n, prefixUses)
		}
	}
}
