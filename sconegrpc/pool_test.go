package sconegrpc

import "testing"

// TestBufPoolClasses checks that a buffer of any size gets a class that
// fits it, with at most a quarter of its size to spare, and that a buffer
// given back serves its class again.
func TestBufPoolClasses(t *testing.T) {
	for n := 1; n <= maxPooled; n += 1 + n/97 {
		c := classFor(n)
		size := classSize(c)
		if size < n || n > 1<<minClassShift && size > n+n/4+1 {
			t.Fatalf("classFor(%d) = class %d of %d bytes", n, c, size)
		}
		if c > 0 && classSize(c-1) >= n {
			t.Fatalf("classFor(%d) = %d, but class %d (%d bytes) fits", n, c, c-1, classSize(c-1))
		}
	}
	p := &bufPool{clearOnPut: true}
	b := p.Get(4500)
	if len(*b) != 4500 || cap(*b) != classSize(classFor(4500)) {
		t.Fatalf("Get(4500): len %d cap %d", len(*b), cap(*b))
	}
	(*b)[0] = 1
	p.Put(b)
	// A pool may drop what it is given (sync.Pool); a buffer that comes back
	// is cleared.
	if b := p.Get(4500); (*b)[0] != 0 {
		t.Fatal("a buffer of the clearing pool came back with its bytes")
	}
}
