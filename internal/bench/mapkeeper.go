package bench

import (
	"context"
	"sync"
)

// mapKeeper is the in-memory sticky session: a map in the server.
type mapKeeper struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMapKeeper() *mapKeeper { return &mapKeeper{m: map[string][]byte{}} }

func (k *mapKeeper) step(_ context.Context, session string, size int) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	d, n := advance(k.m[session], size)
	k.m[session] = d
	return n, nil
}
