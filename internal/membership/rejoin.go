// Rejoining keeps a memberlist group whole after a partition heals.
//
// Memberlist neither probes a member it has declared dead nor exchanges
// state with it, so the two sides of a healed partition, each having
// declared the other dead, would stay apart for good. A tracker remembers
// the members lost and, every interval, its Run loop tries to join one of
// them again (and the seeds, when the member is alone), for up to a timeout
// after the loss. A join exchanges full state: each side learns that the
// other declared it dead, refutes it, and the group is whole again within a
// few intervals of the network healing.

package membership

import (
	"math/rand/v2"
	"sync"
	"time"
)

// tracker remembers the members lost. It is safe for concurrent use.
type tracker struct {
	seeds   []string
	timeout time.Duration

	mu   sync.Mutex
	lost map[string]lost // by member name
}

type lost struct {
	addr  string // gossip address
	since time.Time
}

// newTracker returns a tracker that tries seeds when alone, and a lost member for
// up to timeout after the loss.
func newTracker(seeds []string, timeout time.Duration) *tracker {
	return &tracker{seeds: seeds, timeout: timeout, lost: map[string]lost{}}
}

// Lost records that the member name, at gossip address addr, left the live
// set at now.
func (t *tracker) Lost(name, addr string, now time.Time) {
	if addr == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lost[name] = lost{addr, now}
}

// Found forgets a lost member that is live again.
func (t *tracker) Found(name string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.lost, name)
}

// Len returns how many lost members are still tried.
func (t *tracker) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.lost)
}

// Candidates returns the gossip addresses worth a join at now: the members
// lost less than the timeout ago (older ones are forgotten), and the seeds
// if alone.
func (t *tracker) Candidates(now time.Time, alone bool) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for name, l := range t.lost {
		if now.Sub(l.since) > t.timeout {
			delete(t.lost, name)
			continue
		}
		out = append(out, l.addr)
	}
	if alone {
		out = append(out, t.seeds...)
	}
	return out
}

// Run tries, every interval until stop is closed, to join one candidate
// at random with join. alone reports whether the member sees no other.
func (t *tracker) Run(stop <-chan struct{}, interval time.Duration, alone func() bool, join func(addr string)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if c := t.Candidates(time.Now(), alone()); len(c) > 0 {
			join(c[rand.IntN(len(c))])
		}
	}
}
