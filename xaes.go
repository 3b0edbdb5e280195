package scone

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
)

// XAES-256-GCM (https://c2sp.org/XAES-256-GCM) is AES-256-GCM with a 192-bit
// nonce N: the first 96 bits of N pick a derived key
//
//	L  = AES-256_K(0^128);  K1 = L << 1, xor 0x87 into the last byte if L's top bit was set
//	Kx = AES-256_K(0x00 0x01 'X' 0x00 || N[:12] ⊕ K1) || AES-256_K(0x00 0x02 'X' 0x00 || N[:12] ⊕ K1)
//
// and the last 96 bits are the AES-256-GCM nonce under Kx. Deriving Kx and
// building its GCM costs about 0.6 µs and 5 allocations in Go, twice the
// price of sealing 256 bytes, so both sides reuse it: a sealer keeps one
// random N[:12] for up to prefixUses seals, numbering them in N[12:] (a
// counter, so nonces under one derived key never repeat), and then draws a
// new prefix; an opener caches the derived GCMs it has authenticated with.
// The bytes on the wire are plain XAES-256-GCM either way; docs/security.md
// has the nonce math.

const (
	nonceSize  = 24
	prefixSize = 12
	tagSize    = 16

	// prefixUses is how many seals share one random nonce prefix (one
	// derived key) before the sealer draws a new one.
	prefixUses = 1 << 32

	// cacheSlots is the size of each key's direct-mapped cache of derived
	// keys used for opening. A miss costs one derivation, never an error.
	cacheSlots = 256
)

// xaesKey is one key of the ring, ready to seal and open.
type xaesKey struct {
	block      cipher.Block
	k1         [aes.BlockSize]byte
	prefixUses uint64 // prefixUses, lowered by tests

	sealing atomic.Pointer[derivedKey]
	cache   [cacheSlots]atomic.Pointer[derivedKey]
}

// derivedKey is the AES-256-GCM instance for one nonce prefix.
type derivedKey struct {
	prefix [prefixSize]byte
	aead   cipher.AEAD
	uses   atomic.Uint64
}

func newXAESKey(secret *[keySize]byte) *xaesKey {
	b, err := aes.NewCipher(secret[:])
	if err != nil {
		panic("scone: aes.NewCipher with a 32-byte key: " + err.Error())
	}
	k := &xaesKey{block: b, prefixUses: prefixUses}
	b.Encrypt(k.k1[:], k.k1[:])
	msb := k.k1[0] >> 7
	for i := 0; i < aes.BlockSize-1; i++ {
		k.k1[i] = k.k1[i]<<1 | k.k1[i+1]>>7
	}
	k.k1[aes.BlockSize-1] = k.k1[aes.BlockSize-1]<<1 ^ msb*0x87
	return k
}

// derive returns the AES-256-GCM for a nonce prefix, uncached.
func (k *xaesKey) derive(prefix *[prefixSize]byte) *derivedKey {
	var m1, m2 [aes.BlockSize]byte
	m1[1], m1[2] = 0x01, 'X'
	m2[1], m2[2] = 0x02, 'X'
	copy(m1[4:], prefix[:])
	copy(m2[4:], prefix[:])
	for i := range m1 {
		m1[i] ^= k.k1[i]
		m2[i] ^= k.k1[i]
	}
	var kx [32]byte
	k.block.Encrypt(kx[:16], m1[:])
	k.block.Encrypt(kx[16:], m2[:])
	b, err := aes.NewCipher(kx[:])
	if err != nil {
		panic("scone: aes.NewCipher with a 32-byte key: " + err.Error())
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		panic("scone: cipher.NewGCM: " + err.Error())
	}
	clear(kx[:])
	return &derivedKey{prefix: *prefix, aead: g}
}

// sealKey returns the derived key to seal with now and the number of this
// seal under it (from 1), drawing a new nonce prefix when the current one
// has been used prefixUses times.
func (k *xaesKey) sealKey() (*derivedKey, uint64) {
	for {
		d := k.sealing.Load()
		if d != nil {
			if n := d.uses.Add(1); n <= k.prefixUses {
				return d, n
			}
		}
		var p [prefixSize]byte
		rand.Read(p[:])
		n := k.derive(&p)
		if k.sealing.CompareAndSwap(d, n) {
			k.remember(n)
		}
	}
}

func cacheSlot(prefix *[prefixSize]byte) int {
	return int(binary.LittleEndian.Uint16(prefix[:2]) % cacheSlots)
}

// openKey returns a cached derived key for prefix, or derives one; cached
// is false for a fresh derivation, which the caller remembers only once it
// has authenticated a message with it (so forgeries cannot fill the cache).
func (k *xaesKey) openKey(prefix *[prefixSize]byte) (d *derivedKey, cached bool) {
	if d := k.cache[cacheSlot(prefix)].Load(); d != nil && d.prefix == *prefix {
		return d, true
	}
	return k.derive(prefix), false
}

func (k *xaesKey) remember(d *derivedKey) { k.cache[cacheSlot(&d.prefix)].Store(d) }

// sealInPlace encrypts buf in place. buf holds header‖nonce‖plaintext, with
// the nonce at buf[hdr:body]; it fills in the nonce (the current prefix, then
// 32 zero bits and the 64-bit number of the seal under it), encrypts buf[body:] with buf[:hdr] as associated
// data, and returns header‖nonce‖ciphertext‖tag. Give buf tagSize bytes of
// spare capacity to avoid a copy.
func (k *xaesKey) sealInPlace(buf []byte, hdr, body int) []byte {
	d, n := k.sealKey()
	nonce := buf[hdr : hdr+nonceSize]
	copy(nonce, d.prefix[:])
	binary.BigEndian.PutUint32(nonce[prefixSize:], 0)
	binary.BigEndian.PutUint64(nonce[prefixSize+4:], n)
	return d.aead.Seal(buf[:body], nonce[prefixSize:], buf[body:], buf[:hdr])
}

// sealWithNonce is sealInPlace with a given nonce and no caching: for test
// vectors only, since reusing a nonce under one key breaks GCM.
func (k *xaesKey) sealWithNonce(buf []byte, hdr, body int, nonce *[nonceSize]byte) []byte {
	copy(buf[hdr:body], nonce[:])
	d := k.derive((*[prefixSize]byte)(nonce[:prefixSize]))
	return d.aead.Seal(buf[:body], nonce[prefixSize:], buf[body:], buf[:hdr])
}
