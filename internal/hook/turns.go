package hook

import (
	"context"
	"sync"
)

// Turns makes calls take turns by key: Take waits until no other holder of
// the key's turn remains, or until ctx is done. The client hooks use it so
// two calls never start from the same SCONE (each would seal a successor and
// the holder could keep only one). A key's entry lives only while someone
// holds or waits for it, so keys may be as many as sessions. The zero value
// is ready to use.
type Turns[K comparable] struct {
	mu sync.Mutex
	m  map[K]*turn
}

type turn struct {
	ch   chan struct{}
	refs int
}

// idleTurns recycles turns: most calls find no one ahead of them, and an
// idle key's turn is freed at once.
var idleTurns = sync.Pool{New: func() any { return &turn{ch: make(chan struct{}, 1)} }}

// Take waits for key's turn and returns the function that ends it. It fails
// with ctx's error when ctx is done first.
func (t *Turns[K]) Take(ctx context.Context, key K) (release func(), err error) {
	t.mu.Lock()
	if t.m == nil {
		t.m = make(map[K]*turn)
	}
	tr := t.m[key]
	if tr == nil {
		tr = idleTurns.Get().(*turn)
		t.m[key] = tr
	}
	tr.refs++
	t.mu.Unlock()
	select {
	case tr.ch <- struct{}{}:
		return func() {
			<-tr.ch
			t.leave(key, tr)
		}, nil
	case <-ctx.Done():
		t.leave(key, tr)
		return nil, ctx.Err()
	}
}

func (t *Turns[K]) leave(key K, tr *turn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tr.refs--; tr.refs == 0 {
		delete(t.m, key)
		idleTurns.Put(tr) // empty: its last holder took its token back
	}
}
