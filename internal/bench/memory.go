package bench

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"
)

// MemoryResult is the memory run of one contender: the server-side heap
// after Sessions distinct sessions of one call each.
type MemoryResult struct {
	Contender string
	Sessions  int64
	Size      int
	// HeapBefore and HeapAfter are this process's live heap after a full
	// collection, before the first session and after the last.
	HeapBefore, HeapAfter int64
	// InUseAfter is the heap's spans in use after the last session
	// (runtime.MemStats.HeapInuse, after a full collection).
	InUseAfter int64
	// External is the growth of the state held outside this process
	// (redis-server's dataset).
	External int64
	// Calls, Errors (Unavailable of them), and Wrong count the calls (one
	// per session), as in Run.
	Calls, Errors, Unavailable, Wrong int64
	Elapsed                           time.Duration
}

// Growth returns the server-side memory growth over the run: the heap's
// and the external state's.
func (m *MemoryResult) Growth() int64 { return m.HeapAfter - m.HeapBefore + m.External }

// MemoryConfig is a memory run: sessions distinct sessions of one call each,
// of size bytes of state, from callers concurrent callers, against a fresh
// server of each contender named, one after the other.
type MemoryConfig struct {
	Contenders []string
	Sessions   int64
	Size       int
	Callers    int
	// Timeout bounds each contender's run.
	Timeout time.Duration
	Log     io.Writer
}

// DefaultMemoryConfig returns the full memory run: a million sessions of
// 256 B, the in-memory map against SCONE client mode.
func DefaultMemoryConfig() MemoryConfig {
	return MemoryConfig{
		Contenders: []string{Map, Client},
		Sessions:   1_000_000,
		Size:       256,
		Callers:    64,
		Timeout:    10 * time.Minute,
	}
}

// Memory runs mc. Run it alone, and before anything else: the heap it
// reads is the whole process's.
func Memory(ctx context.Context, mc MemoryConfig) ([]MemoryResult, error) {
	if mc.Sessions < 1 || mc.Callers < 1 || mc.Size < MinSize || mc.Size > MaxSize || mc.Timeout <= 0 {
		return nil, fmt.Errorf("memory run: bad configuration %+v", mc)
	}
	cfg := Config{Sizes: []int{mc.Size}, Callers: mc.Callers, Rounds: 1, Duration: mc.Timeout,
		MaxCalls: mc.Sessions, SessionCalls: 1, Seed: 1}
	var out []MemoryResult
	for _, c := range Contenders() {
		if !slices.Contains(mc.Contenders, c.Name) {
			continue
		}
		res, err := memoryOne(ctx, &cfg, c, mc.Size)
		if err != nil {
			return out, err
		}
		logf(mc.Log, "memory %-8s %d sessions: heap %s → %s", c.Name, res.Sessions, MiB(res.HeapBefore), MiB(res.HeapAfter))
		out = append(out, res)
	}
	return out, nil
}

// memoryOne starts c afresh and alone, warms it up, and measures the
// growth of the server-side memory over cfg.MaxCalls sessions of
// cfg.SessionCalls (1) call each.
func memoryOne(ctx context.Context, cfg *Config, c Contender, size int) (MemoryResult, error) {
	r, err := startContender(ctx, c)
	if err != nil {
		return MemoryResult{}, err
	}
	defer r.close()
	var seq atomic.Int64
	// A warmup first, not counted: connection pools fill, buffers grow,
	// the relay learns the method's kind.
	warm := *cfg
	warm.MaxCalls = int64(10 * cfg.Callers)
	if w := measure(ctx, &warm, c, r, size, 0, cfg.Duration, &seq); w.Errors+w.Wrong > 0 {
		return MemoryResult{}, fmt.Errorf("warmup of %s: %d calls failed: %s", c.Name, w.Errors+w.Wrong, w.FirstError)
	}
	var ext0 int64
	if r.extMemory != nil {
		if ext0, err = r.extMemory(ctx); err != nil {
			return MemoryResult{}, err
		}
	}
	heap0 := settledHeap()
	run := measure(ctx, cfg, c, r, size, 1, cfg.Duration, &seq)
	res := MemoryResult{
		Contender: c.Name, Sessions: run.Sessions, Size: size,
		HeapBefore: heap0,
		Calls:      run.Calls, Errors: run.Errors, Unavailable: run.Unavailable, Wrong: run.Wrong, Elapsed: run.Elapsed,
	}
	res.HeapAfter, res.InUseAfter = liveHeap()
	if r.extMemory != nil {
		ext1, err := r.extMemory(ctx)
		if err != nil {
			return res, err
		}
		res.External = ext1 - ext0
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if run.Calls < cfg.MaxCalls {
		return res, fmt.Errorf("memory run of %s: %d of %d sessions in %v", c.Name, run.Sessions, cfg.MaxCalls, cfg.Duration)
	}
	return res, nil
}

// MiB formats bytes in mebibytes.
func MiB(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// settledHeap waits until the live heap has not shrunk for a second (at
// most 10 s), and returns it: servers closed a moment ago still let go of
// their memory as their goroutines end, later on a loaded machine, which
// would read as the next contender's shrinking.
func settledHeap() int64 {
	last, _ := liveHeap()
	stableSince := time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && time.Since(stableSince) < time.Second; {
		time.Sleep(200 * time.Millisecond)
		cur, _ := liveHeap()
		if last-cur >= 64<<10 {
			stableSince = time.Now()
		}
		last = cur
	}
	return last
}
