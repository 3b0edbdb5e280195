package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/scone-project/scone/internal/chaos"
)

// procClock is the skewable clock of one process, as the nemesis set it.
type procClock struct {
	addr string

	mu     sync.Mutex
	skew   time.Duration
	gen    uint64 // odd while a change is in flight
	broken bool   // a change failed: the skew is not known
}

// read returns the skew and a generation: two reads with the same even
// generation saw the same skew all the time between them.
func (c *procClock) read() (time.Duration, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.skew, c.gen, !c.broken && c.gen%2 == 0
}

// set skews the process's clock by d.
func (c *procClock) set(d time.Duration) error {
	c.mu.Lock()
	c.gen++
	c.mu.Unlock()
	req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/skew?d=%v", c.addr, d), nil)
	if err != nil {
		return err
	}
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("skew %s: %s", c.addr, resp.Status)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.skew, c.broken = d, err != nil
	return err
}

// nemesis injects the schedule's faults, one at a time, until ctx ends;
// each fault is healed before the next starts, even when ctx ends first.
func (r *chaosRun) nemesis(ctx context.Context, schedule []chaos.Fault) {
	for _, f := range schedule {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(r.t0.Add(f.At))):
		}
		if (f.Kind == chaos.Kill || f.Kind == chaos.Pause) && r.mode.settle != nil {
			if err := r.mode.settle(ctx, r, 30*time.Second); err != nil {
				if ctx.Err() != nil {
					return
				}
				r.mu.Lock()
				r.skipped++
				r.mu.Unlock()
				r.narrate("skip %v: %v", f, err)
				continue
			}
		}
		heal, err := r.inject(f)
		if err != nil {
			r.say("fault %v: %v", f, err)
			continue
		}
		r.narrate("fault: %v", f)
		r.mu.Lock()
		r.faults[f.Kind]++
		r.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(f.For):
		}
		if err := heal(); err != nil {
			r.say("healing %v: %v", f, err)
		}
	}
}

// inject starts a fault and returns what heals it.
func (r *chaosRun) inject(f chaos.Fault) (func() error, error) {
	switch f.Kind {
	case chaos.Kill:
		p := r.byName[f.Target]
		p.kill()
		return func() error {
			start := time.Now()
			err := p.start(r.bin)
			for i := 0; err != nil && i < 3; i++ { // a port still held: try again
				time.Sleep(time.Second)
				err = p.start(r.bin)
			}
			if err == nil {
				r.mu.Lock()
				r.restarts = append(r.restarts, time.Since(start))
				r.mu.Unlock()
			}
			return err
		}, nil
	case chaos.Pause:
		p := r.byName[f.Target]
		p.pause(true)
		return func() error { p.pause(false); return nil }, nil
	case chaos.Partition:
		p := r.proxies[f.Target]
		p.Partition()
		return func() error { p.Heal(); return nil }, nil
	case chaos.Latency:
		p := r.proxies[f.Target]
		p.SetLatency(f.Delay)
		return func() error { p.SetLatency(0); return nil }, nil
	case chaos.Skew:
		c := r.clocks[f.Target]
		if err := c.set(f.Delay); err != nil {
			return nil, err
		}
		return func() error { return c.set(0) }, nil
	}
	return nil, fmt.Errorf("unknown fault kind %q", f.Kind)
}
