// Package bench is the harness of sconelab bench: the same workload against
// every way of keeping session state (plain gRPC, a map in the server, a
// Redis session store, SCONE's client, relay and cluster modes, nginx as
// the plain proxy), all on 127.0.0.1, alternated in rounds (A B C … A B C …)
// so that drift on a noisy machine hits every contender alike.
//
// The workload: C concurrent callers, each running sessions one after
// another; every call of a session is one read-modify-write of the
// session's S bytes of state (its step count and a changed byte), and the
// reply's count is checked against the calls the session made, so a lost
// or stale state is caught, not timed. Session lengths come from a fixed
// seed.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/bench/benchpb"
	"github.com/scone-project/scone/internal/grpcframe"
)

// Config is what a bench runs. Start from DefaultConfig.
type Config struct {
	// Contenders names the contenders to run, in Contenders' order; empty
	// runs them all.
	Contenders []string
	// Sizes are the state sizes, in bytes.
	Sizes []int
	// Callers is the number of concurrent callers.
	Callers int
	// Rounds is the number of rounds; each round runs every contender at
	// every size once.
	Rounds int
	// Duration bounds each measured run (one contender, one size, one
	// round); Warmup is the unmeasured run of each before the first round.
	Duration, Warmup time.Duration
	// MaxCalls, if positive, ends a run after that many calls (before
	// Duration passes).
	MaxCalls int64
	// SessionCalls is the mean number of calls of a session (each session
	// makes 1 to 2×SessionCalls−1, uniformly).
	SessionCalls int
	// Seed fixes the session lengths.
	Seed uint64
	// HeapSessions, if positive, is the number of one-call sessions of the
	// heap pass: after the rounds, each contender is started afresh, alone,
	// at each size, and its server-side memory growth over that many
	// sessions is measured.
	HeapSessions int64
	// Log receives progress lines (nil: none).
	Log io.Writer
}

// DefaultConfig returns the full bench's configuration.
func DefaultConfig() Config {
	return Config{
		Sizes:        []int{256, 4096},
		Callers:      64,
		Rounds:       10,
		Duration:     1500 * time.Millisecond,
		Warmup:       500 * time.Millisecond,
		SessionCalls: 10,
		Seed:         1,
		HeapSessions: 30_000,
	}
}

// Validate reports what is wrong with c, if anything.
func (c *Config) Validate() error {
	switch {
	case len(c.Sizes) == 0:
		return errors.New("no state sizes")
	case c.Callers < 1:
		return fmt.Errorf("callers %d: want at least 1", c.Callers)
	case c.Rounds < 1:
		return fmt.Errorf("rounds %d: want at least 1", c.Rounds)
	case c.Duration <= 0:
		return fmt.Errorf("duration %v: want more than 0", c.Duration)
	case c.SessionCalls < 1:
		return fmt.Errorf("session calls %d: want at least 1", c.SessionCalls)
	}
	for _, s := range c.Sizes {
		if s < MinSize || s > MaxSize {
			return fmt.Errorf("state size %d out of [%d, %d]", s, MinSize, MaxSize)
		}
	}
	known := map[string]bool{}
	for _, c := range Contenders() {
		known[c.Name] = true
	}
	for _, n := range c.Contenders {
		if !known[n] {
			return fmt.Errorf("unknown contender %q", n)
		}
	}
	return nil
}

// Run is one measured run: one contender at one size in one round.
type Run struct {
	Contender string
	Size      int
	Round     int // from 1; 0 for a warmup
	// Calls made; Errors among them failed (Unavailable of them with
	// gRPC's Unavailable, or with the scone code in_doubt: the answers of
	// a cluster or circulating relays when an owner or holder does not
	// answer in time), Wrong replied with a state other than the session's
	// (lost or stale).
	Calls, Errors, Unavailable, Wrong int64
	// FirstError describes the first failed or wrong call.
	FirstError string
	// Sessions started.
	Sessions int64
	Elapsed  time.Duration
	// CPU is the CPU time of this process (callers and servers) and of the
	// contender's external processes during the run.
	CPU time.Duration
	// CallerWire is the bytes read and written on the callers' connections
	// during the run; ServerWire on the Sessions servers' (see running).
	CallerWire, ServerWire int64
	// Latency holds every call's latency.
	Latency *Histogram
}

// QPS returns the run's calls per second.
func (r *Run) QPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Calls) / r.Elapsed.Seconds()
}

// Skip is a contender that did not run, and why.
type Skip struct {
	Contender string
	Reason    string
}

// Report is the outcome of a bench.
type Report struct {
	Config  Config
	Ran     []string // contenders run, in order
	Skipped []Skip
	Runs    []Run // the measured runs, in the order they ran
	// Heap is the heap pass, a result per contender and size.
	Heap    []MemoryResult
	Started time.Time
	Elapsed time.Duration
}

// Bench runs cfg: it starts every contender, warms each up, runs the
// rounds, and stops them. A contender that cannot run here is skipped; one
// that fails to start is skipped with its error. Failed or wrong calls are
// counted in the runs, not returned as errors; the error is for a bench
// that could not run at all (a bad Config, a cancelled ctx).
func Bench(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Config: cfg, Started: time.Now()}
	type active struct {
		c Contender
		r *running
	}
	var act []active
	defer func() {
		for _, a := range act {
			a.r.close()
		}
	}()
	for _, c := range Contenders() {
		if len(cfg.Contenders) > 0 && !slices.Contains(cfg.Contenders, c.Name) {
			continue
		}
		r, err := startContender(ctx, c)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rep.Skipped = append(rep.Skipped, Skip{c.Name, err.Error()})
			cfg.logf("skip  %-16s %v", c.Name, err)
			continue
		}
		act = append(act, active{c, r})
		rep.Ran = append(rep.Ran, c.Name)
		cfg.logf("start %-16s %s", c.Name, c.About)
	}
	var seq atomic.Int64 // session numbers, unique over the bench
	if cfg.Warmup > 0 {
		for _, size := range cfg.Sizes {
			for _, a := range act {
				run := measure(ctx, &cfg, a.c, a.r, size, 0, cfg.Warmup, &seq)
				cfg.logf("warm  %-16s size=%-5d %8.0f calls/s", a.c.Name, size, run.QPS())
			}
		}
	}
	for round := 1; round <= cfg.Rounds; round++ {
		for _, size := range cfg.Sizes {
			for _, a := range act {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				run := measure(ctx, &cfg, a.c, a.r, size, round, cfg.Duration, &seq)
				rep.Runs = append(rep.Runs, run)
				cfg.logf("round %d/%d %-16s size=%-5d %8.0f calls/s  p99 %v  errors %d  wrong %d",
					round, cfg.Rounds, a.c.Name, size, run.QPS(), run.Latency.Quantile(0.99).Round(time.Microsecond), run.Errors, run.Wrong)
			}
		}
	}
	for _, a := range act {
		a.r.close()
	}
	act = nil
	if cfg.HeapSessions > 0 {
		hc := cfg
		hc.Rounds, hc.Duration, hc.MaxCalls, hc.SessionCalls = 1, 10*time.Minute, cfg.HeapSessions, 1
		for _, size := range cfg.Sizes {
			for _, c := range Contenders() {
				if !slices.Contains(rep.Ran, c.Name) {
					continue
				}
				res, err := memoryOne(ctx, &hc, c, size)
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if err != nil {
					cfg.logf("heap  %-16s size=%-5d not measured: %v", c.Name, size, err)
					continue
				}
				rep.Heap = append(rep.Heap, res)
				cfg.logf("heap  %-16s size=%-5d %d sessions: %s", c.Name, size, res.Sessions, fmtBytes(float64(res.Growth())))
			}
		}
	}
	rep.Elapsed = time.Since(rep.Started)
	return rep, nil
}

func (c *Config) logf(format string, args ...any) { logf(c.Log, format, args...) }

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

// liveHeap returns the bytes of live heap objects after a full collection,
// and the bytes of the heap's spans in use (HeapInuse: the live objects
// and the free room in their spans).
func liveHeap() (live, inUse int64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc), int64(ms.HeapInuse)
}

// externalCPU returns the CPU time of r's external processes.
func externalCPU(r *running) time.Duration {
	var t time.Duration
	if r.pids != nil {
		for _, pid := range r.pids() {
			t += cpuOf(pid)
		}
	}
	return t
}

// measure runs the workload on r for d (or cfg.MaxCalls calls) with state
// of size bytes.
func measure(ctx context.Context, cfg *Config, c Contender, r *running, size, round int, d time.Duration, seq *atomic.Int64) Run {
	run := Run{Contender: c.Name, Size: size, Round: round, Latency: new(Histogram)}
	hists := make([]Histogram, cfg.Callers)
	var (
		calls, errs, unavail, wrong, sessions atomic.Int64
		firstMu                               sync.Mutex
		first                                 string
	)
	note := func(err error) {
		firstMu.Lock()
		defer firstMu.Unlock()
		if first == "" {
			first = err.Error()
		}
	}
	runtime.GC() // no garbage of the run before
	cpu0, xcpu0 := selfCPU(), externalCPU(r)
	cw0, sw0 := r.callerWire.Load(), r.serverWire.Load()
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for i := range cfg.Callers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(round)<<32|uint64(size)<<16|uint64(i)))
			req := &benchpb.StepRequest{Size: uint32(size)}
			var sctx context.Context
			var left int
			var count uint64
			for ctx.Err() == nil && time.Now().Before(deadline) {
				if n := calls.Add(1); cfg.MaxCalls > 0 && n > cfg.MaxCalls {
					calls.Add(-1)
					break
				}
				if left == 0 {
					req.Session = fmt.Sprintf("%s-%d-%d", c.Name, size, seq.Add(1))
					sctx = r.session(ctx, req.Session)
					left, count = 1+rng.IntN(2*cfg.SessionCalls-1), 0
					sessions.Add(1)
				}
				t0 := time.Now()
				rep, err := r.step(sctx, i, req)
				hists[i].Add(time.Since(t0))
				left--
				count++
				switch {
				case err != nil:
					errs.Add(1)
					if status.Code(err) == codes.Unavailable || grpcframe.StatusCode(err) == scone.CodeInDoubt {
						unavail.Add(1)
					}
					note(fmt.Errorf("session %s: %w", req.Session, err))
					left = 0 // its state is unknown now
				case c.Stateful && rep.GetCount() != count:
					wrong.Add(1)
					note(fmt.Errorf("session %s: %w", req.Session, wrongCount(rep.GetCount(), count)))
					left = 0
				}
			}
		})
	}
	wg.Wait()
	run.Elapsed = time.Since(start)
	run.CPU = selfCPU() - cpu0 + externalCPU(r) - xcpu0
	run.CallerWire, run.ServerWire = r.callerWire.Load()-cw0, r.serverWire.Load()-sw0
	run.Calls, run.Errors, run.Unavailable, run.Wrong = calls.Load(), errs.Load(), unavail.Load(), wrong.Load()
	run.Sessions, run.FirstError = sessions.Load(), first
	for i := range hists {
		run.Latency.Merge(&hists[i])
	}
	return run
}
