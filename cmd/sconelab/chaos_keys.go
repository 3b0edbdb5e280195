package main

import (
	"context"
	"time"

	"github.com/scone-project/scone"
)

// keyStep is the time between two steps of a key rotation (add, promote,
// retire): enough for every running process to reload the key file.
const keyStep = time.Second

// rotateKeys rotates the run's keys as an operator would with scone keys,
// every cfg.rotate (the first after a quarter of it, or of the run if
// shorter) until ctx ends: add a key, promote it, and retire the old
// primary cfg.retire later (before the SCONEs it sealed expire, so a SCONE
// that was not re-sealed since must be refused as unknown_key); keys past
// their retirement are pruned. After each step every process that reads
// the key file reloads it (SIGHUP; a paused one when it wakes, a restarted
// one at its start). The retirements go to r.retired for the checker.
func (r *chaosRun) rotateKeys(ctx context.Context) {
	if r.cfg.rotate <= 0 {
		return
	}
	wait := min(r.cfg.rotate, r.cfg.duration) / 4
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = r.cfg.rotate
		if err := r.rotateOnce(ctx); err != nil {
			r.say("key rotation: %v", err)
			return
		}
	}
}

// rotateOnce runs the three steps of one rotation.
func (r *chaosRun) rotateOnce(ctx context.Context) error {
	var added, old uint32
	steps := []func(ring *scone.KeyRing, now time.Time) error{
		func(ring *scone.KeyRing, now time.Time) error {
			ring.Prune(now)
			old = ring.Primary()
			for _, k := range ring.Keys() {
				added = max(added, k.ID+1)
			}
			return ring.Add(scone.GenerateKey(added, now))
		},
		func(ring *scone.KeyRing, _ time.Time) error { return ring.Promote(added) },
		func(ring *scone.KeyRing, now time.Time) error {
			at := now.Add(r.cfg.retire)
			if err := ring.Retire(old, at); err != nil {
				return err
			}
			r.mu.Lock()
			r.retired[old] = r.hist.Offset(at)
			r.rotations++
			r.mu.Unlock()
			return nil
		},
	}
	for i, step := range steps {
		if i > 0 {
			select {
			case <-ctx.Done():
				return nil // a rotation cut short leaves a usable key file
			case <-time.After(keyStep):
			}
		}
		ring, err := scone.ReadKeyFile(r.keys)
		if err != nil {
			return err
		}
		if err := step(ring, time.Now()); err != nil {
			return err
		}
		if err := scone.WriteKeyFile(r.keys, ring); err != nil {
			return err
		}
		for _, p := range r.procs {
			if p.reloadsKeys() {
				p.hup()
			}
		}
	}
	r.narrate("keys: key %d added and promoted; key %d retires in %v", added, old, r.cfg.retire)
	return nil
}

// retirements returns the keys retired so far, by key ID, as offsets from
// the history's start.
func (r *chaosRun) retirements() map[uint32]time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[uint32]time.Duration, len(r.retired))
	for id, at := range r.retired {
		out[id] = at
	}
	return out
}
