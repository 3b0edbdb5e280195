package membership

import (
	"slices"
	"testing"
	"time"
)

func TestRejoinCandidates(t *testing.T) {
	now := time.Now()
	tr := newTracker([]string{"seed:1"}, time.Hour)
	tr.Lost("a", "a:1", now)
	tr.Lost("b", "b:1", now.Add(-2*time.Hour)) // lost too long ago
	tr.Lost("c", "", now)                      // no address: nothing to try
	got := tr.Candidates(now, false)
	if !slices.Equal(got, []string{"a:1"}) {
		t.Fatalf("candidates: %v, want [a:1]", got)
	}
	if tr.Len() != 1 {
		t.Fatalf("%d lost members kept, want 1 (b forgotten)", tr.Len())
	}
	got = tr.Candidates(now, true)
	slices.Sort(got)
	if !slices.Equal(got, []string{"a:1", "seed:1"}) {
		t.Fatalf("candidates when alone: %v", got)
	}
	tr.Found("a")
	if got := tr.Candidates(now, false); len(got) != 0 || tr.Len() != 0 {
		t.Fatalf("after a came back: %v, %d", got, tr.Len())
	}
}

func TestRejoinRun(t *testing.T) {
	tr := newTracker(nil, time.Hour)
	tr.Lost("a", "a:1", time.Now())
	joined := make(chan string, 1)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tr.Run(stop, time.Millisecond, func() bool { return false }, func(addr string) {
			select {
			case joined <- addr:
			default:
			}
		})
	}()
	if addr := <-joined; addr != "a:1" {
		t.Fatalf("joined %q, want a:1", addr)
	}
	close(stop)
	<-done
}
