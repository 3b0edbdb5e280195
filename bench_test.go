package scone

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

var benchSizes = []int{64, 256, 1024, 4096, 16384}

// BenchmarkSealOpen seals and opens a SCONE with size bytes of data, as the
// hooks seal it (service, scope, session, times, data; no endpoint, object
// or status), with caller-owned buffers: the per-request crypto and encoding
// cost.
func BenchmarkSealOpen(b *testing.B) {
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			benchSealOpen(b, size, func(sc *SCONE) { sc.Endpoint, sc.Object, sc.Status = "", "", "" })
		})
	}
}

// BenchmarkSealOpenAllFields is BenchmarkSealOpen with every field of the
// patent's SCONE set (endpoint, object and status: 44 more bytes).
func BenchmarkSealOpenAllFields(b *testing.B) {
	for _, size := range []int{256, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) { benchSealOpen(b, size, func(*SCONE) {}) })
	}
}

func benchSealOpen(b *testing.B, size int, edit func(*SCONE)) {
	s, clk := newTestSealer(b)
	in := sampleSCONE(clk.Now(), make([]byte, size))
	edit(in)
	out := SCONE{Data: make([]byte, 0, size+bodyMin+256)}
	buf := make([]byte, 0, size+512)
	ctx := context.Background()
	want := Expect{Service: "cart"}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		buf, err = s.seal(buf[:0], in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err = s.open(ctx, &out, buf, want); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRestoreCommit is a whole server-side step as a hook runs it:
// restore the state from a SCONE, replace the data, commit a new SCONE.
func BenchmarkRestoreCommit(b *testing.B) {
	for _, size := range []int{256, 4096} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			s, clk := newTestSealer(b)
			tok := mustSeal(b, s, sampleSCONE(clk.Now(), make([]byte, size)))
			data := make([]byte, size)
			buf := make([]byte, 0, len(tok)+64)
			ctx := context.Background()
			want := Expect{Service: "cart"}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				st, err := s.Restore(ctx, tok, want, "/shop.Gateway/")
				if err != nil {
					b.Fatal(err)
				}
				st.SetData(data)
				if _, buf, err = s.Commit(buf[:0], st); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAEAD compares, in one run, the AEAD constructions considered for
// the envelope (seal+open of size bytes, caller-owned buffers):
//
//	alg=xaes-cached         XAES-256-GCM, derived key reused per nonce prefix, counter suffix (what Seal does)
//	alg=xaes-per-message    XAES-256-GCM deriving a key on every seal and open
//	alg=xchacha20poly1305   XChaCha20-Poly1305 (x/crypto)
//	alg=aes256gcm-random96  AES-256-GCM with random 96-bit nonces (unsafe past ~2^32 seals per key)
func BenchmarkAEAD(b *testing.B) {
	key := make([]byte, keySize)
	rand.Read(key)
	x := newXAESKey((*[keySize]byte)(key))
	blk, _ := aes.NewCipher(key)
	gcm, _ := cipher.NewGCM(blk)
	xc, _ := chacha20poly1305.NewX(key)
	for _, size := range []int{256, 4096} {
		pt := make([]byte, size)
		aad := make([]byte, 40)
		ct := make([]byte, 0, size+tagSize)
		back := make([]byte, 0, size)
		nonce := make([]byte, nonceSize)
		run := func(name string, step func() error) {
			b.Run(fmt.Sprintf("alg=%s/size=%d", name, size), func(b *testing.B) {
				b.SetBytes(int64(size))
				b.ReportAllocs()
				for b.Loop() {
					if err := step(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		run("xaes-cached", func() error {
			d, n := x.sealKey()
			binary.BigEndian.PutUint64(nonce[prefixSize+4:], n)
			ct = d.aead.Seal(ct[:0], nonce[prefixSize:], pt, aad)
			o, _ := x.openKey(&d.prefix)
			var err error
			back, err = o.aead.Open(back[:0], nonce[prefixSize:], ct, aad)
			return err
		})
		run("xaes-per-message", func() error {
			rand.Read(nonce)
			ct = x.derive((*[prefixSize]byte)(nonce)).aead.Seal(ct[:0], nonce[prefixSize:], pt, aad)
			var err error
			back, err = x.derive((*[prefixSize]byte)(nonce)).aead.Open(back[:0], nonce[prefixSize:], ct, aad)
			return err
		})
		run("xchacha20poly1305", func() error {
			rand.Read(nonce)
			ct = xc.Seal(ct[:0], nonce, pt, aad)
			var err error
			back, err = xc.Open(back[:0], nonce, ct, aad)
			return err
		})
		run("aes256gcm-random96", func() error {
			rand.Read(nonce[:12])
			ct = gcm.Seal(ct[:0], nonce[:12], pt, aad)
			var err error
			back, err = gcm.Open(back[:0], nonce[:12], ct, aad)
			return err
		})
	}
}

// BenchmarkParseHeader is what a holder pays per SCONE it stores.
func BenchmarkParseHeader(b *testing.B) {
	s, clk := newTestSealer(b)
	tok := mustSeal(b, s, sampleSCONE(clk.Now(), make([]byte, 256)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseHeader(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDict is a client's per-call holder work: attach (Match) and
// store the reply's SCONE (Put), with 3 SCONEs held.
func BenchmarkDict(b *testing.B) {
	s, clk := newTestSealer(b)
	d := NewDict(WithDictClock(clk.Now))
	var toks [][]byte
	for i, svc := range []string{"gateway", "cart", "inventory"} {
		tok := sealHdr(b, s, svc, "/shop.Gateway/", uint64(i+1), clk.Now().Add(time.Hour))
		toks = append(toks, tok)
		if _, err := d.Put(tok); err != nil {
			b.Fatal(err)
		}
	}
	var dst [][]byte
	b.ReportAllocs()
	for b.Loop() {
		dst = d.Match(dst[:0], "/shop.Gateway/AddItem")
		if _, err := d.Put(toks[1]); err != nil {
			b.Fatal(err)
		}
	}
}
