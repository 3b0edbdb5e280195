package sconegrpc

import (
	"math/bits"
	"sync"
)

// bufPool is the hook's pool of byte buffers: the messages the codec
// writes (gRPC hands them back through mem.Buffer's Free), the SCONEs the
// server seals, the request frames the codec takes off, and the restored
// states' data.
//
// gRPC's default pool clears every buffer it hands out, across its whole
// tier (16 KiB for a 4.4 KiB message): four such Gets per call cost more
// than the copies they serve. This pool's classes are closer to the sizes
// asked for (four per power of two), and it clears only where stale bytes
// could be read: a pool made with clearOnPut clears a buffer, over its
// capacity, as it comes back. The others hold bytes that go to the wire
// (sealed SCONEs, messages being sent) or frames from it, always written
// before they are read.
type bufPool struct {
	classes    [numClasses]sync.Pool
	clearOnPut bool
}

// The classes: 256 bytes, then four per power of two up to maxPooled.
const (
	minClassShift = 8 // 256 B
	maxPooled     = 1 << 20
	numClasses    = 4*(20-minClassShift) + 1
)

var (
	// wirePool holds bytes for the wire and from it: not cleared.
	wirePool = &bufPool{}
	// dataPool holds restored states' data: cleared as it comes back, so a
	// session's plaintext never shows in another's spare capacity.
	dataPool = &bufPool{clearOnPut: true}
)

// classSize returns the size of class i.
func classSize(i int) int {
	if i == 0 {
		return 1 << minClassShift
	}
	i--
	shift := minClassShift + i/4
	return 1<<shift + (i%4+1)<<(shift-2)
}

// classFor returns the smallest class of at least n bytes (n ≤ maxPooled).
func classFor(n int) int {
	if n <= 1<<minClassShift {
		return 0
	}
	shift := bits.Len(uint(n-1)) - 1 // 2^shift < n ≤ 2^(shift+1)
	step := 1 << (shift - 2)
	q := (n - 1<<shift + step - 1) / step // 1..4
	return 1 + (shift-minClassShift)*4 + q - 1
}

// Get returns a buffer of length n, from the pool if it has one of the
// right class. Its bytes are not cleared: write them before reading.
func (p *bufPool) Get(n int) *[]byte {
	if n > maxPooled {
		b := make([]byte, n)
		return &b
	}
	c := classFor(n)
	if b, ok := p.classes[c].Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, classSize(c))
	return &b
}

// Put gives a buffer back, to the largest class it can serve (a buffer
// from elsewhere, of any capacity, is welcome).
func (p *bufPool) Put(b *[]byte) {
	n := cap(*b)
	if n < 1<<minClassShift || n > maxPooled {
		return
	}
	if p.clearOnPut {
		clear((*b)[:n])
	}
	c := classFor(n)
	if classSize(c) > n {
		c-- // the class below, which this buffer can serve
	}
	p.classes[c].Put(b)
}
