package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
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
	err := chaosPut(c.addr, "/skew?d="+url.QueryEscape(d.String()))
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.skew, c.broken = d, err != nil
	return err
}

// chaosPut sends a PUT to a process's chaos control endpoint
// (internal/chaosctl).
func chaosPut(addr, pathQuery string) error {
	req, err := http.NewRequest(http.MethodPut, "http://"+addr+pathQuery, nil)
	if err != nil {
		return err
	}
	hc := http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("PUT %s%s: %s: %s", addr, pathQuery, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// blockGossip makes a process drop its gossip to and from the members
// gossiping at addrs (none: heals).
func (r *chaosRun) blockGossip(name string, addrs []string) error {
	return chaosPut(r.clocks[name].addr, "/gossip-block?addrs="+url.QueryEscape(strings.Join(addrs, ",")))
}

// cutGossip cuts a process's gossip off from every other member's, both
// ways: it drops theirs, and they drop its. It returns what heals it.
func (r *chaosRun) cutGossip(name string) (func() error, error) {
	heal := func() error {
		var errs []error
		for other := range r.gossip {
			errs = append(errs, r.blockGossip(other, nil))
		}
		return errors.Join(errs...)
	}
	var others []string
	for other, addr := range r.gossip {
		if other != name {
			others = append(others, addr)
		}
	}
	err := r.blockGossip(name, others)
	for other := range r.gossip {
		if other != name && err == nil {
			err = r.blockGossip(other, []string{r.gossip[name]})
		}
	}
	if err != nil {
		return nil, errors.Join(err, heal())
	}
	return heal, nil
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
		// A process killed, paused or cut off from gossip is lost to the
		// others: wait until they can lose one with nothing lost.
		_, cut := strings.CutPrefix(f.Target, chaos.GossipPrefix)
		if (f.Kind == chaos.Kill || f.Kind == chaos.Pause || cut) && r.mode.settle != nil {
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
		if cut {
			r.gossipCuts++
		}
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
			err := p.start()
			for i := 0; err != nil && i < 3; i++ { // a port still held: try again
				time.Sleep(time.Second)
				err = p.start()
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
		if name, ok := strings.CutPrefix(f.Target, chaos.GossipPrefix); ok {
			return r.cutGossip(name)
		}
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
