package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// FaultKind is a kind of fault the nemesis injects.
type FaultKind string

// The fault kinds.
const (
	Kill      FaultKind = "kill"      // SIGKILL, restart after For
	Pause     FaultKind = "pause"     // SIGSTOP, SIGCONT after For
	Partition FaultKind = "partition" // no byte crosses a link (or a process's gossip) for For
	Latency   FaultKind = "latency"   // a link delays every chunk by Delay for For
	Skew      FaultKind = "skew"      // a process's clock is off by Delay for For
)

// GossipPrefix starts the Target of a Partition that cuts a process's
// gossip (memberlist, UDP and TCP) off from every other member's, both
// ways: "gossip:node-2".
const GossipPrefix = "gossip:"

// Fault is one fault of a schedule.
type Fault struct {
	// At is when the fault starts, from the start of the run, if the
	// previous ones kept to time (the nemesis may wait for the system to
	// settle first, which delays the rest).
	At     time.Duration
	Kind   FaultKind
	Target string        // a process, a link "from>to", or GossipPrefix and a process
	For    time.Duration // how long it lasts
	Delay  time.Duration // Latency: added per chunk; Skew: the clock's offset
}

// String describes the fault.
func (f Fault) String() string {
	s := fmt.Sprintf("%s %s for %v", f.Kind, f.Target, f.For)
	switch f.Kind {
	case Latency:
		s += fmt.Sprintf(" (+%v)", f.Delay)
	case Skew:
		s += fmt.Sprintf(" (%+v)", f.Delay)
	}
	return s
}

// Targets are what the nemesis may hit, by kind of fault; a kind with no
// target is never chosen.
type Targets struct {
	Kill, Pause, Skew []string // processes
	Links             []string // "from>to", for Partition and Latency
	// Gossip are the processes whose gossip a Partition may cut off from
	// every other member's (half the partitions, when there are links too).
	Gossip []string
	// Skews are the clock offsets to choose from.
	Skews []time.Duration
}

// NewSchedule returns the faults of a run of length d, one at a time, a
// gap of about every between two, from the seed alone: the same seed and
// targets give the same schedule.
func NewSchedule(seed uint64, t Targets, d, every time.Duration) []Fault {
	r := rand.New(rand.NewPCG(seed, 0x5c0e))
	type choice struct {
		kind    FaultKind
		targets []string
	}
	var kinds []choice
	var cuts []string
	for _, p := range t.Gossip {
		cuts = append(cuts, GossipPrefix+p)
	}
	for _, c := range []choice{{Kill, t.Kill}, {Pause, t.Pause}, {Partition, slices.Concat(t.Links, cuts)}, {Latency, t.Links}, {Skew, t.Skew}} {
		if len(c.targets) > 0 && (c.kind != Skew || len(t.Skews) > 0) {
			kinds = append(kinds, c)
		}
	}
	if len(kinds) == 0 || every <= 0 {
		return nil
	}
	// target draws a target of c: uniformly, except that a Partition with
	// both links and gossip to cut cuts gossip half the time. It is one
	// draw either way, so that the same seed draws the same kinds, at the
	// same times, with or without gossip to cut.
	target := func(c choice) string {
		l, g := len(t.Links), len(cuts)
		if c.kind != Partition || l == 0 || g == 0 {
			return c.targets[r.IntN(len(c.targets))]
		}
		n := r.IntN(2 * l * g)
		if n < l*g {
			return t.Links[n/g]
		}
		return cuts[n/l-g]
	}
	var out []Fault
	at := every / 2
	for {
		c := kinds[r.IntN(len(kinds))]
		f := Fault{At: at, Kind: c.kind, Target: target(c),
			For: every/4 + time.Duration(r.Int64N(int64(every)))}
		switch f.Kind {
		case Latency:
			f.Delay = time.Duration(20+r.IntN(180)) * time.Millisecond
		case Skew:
			f.Delay = t.Skews[r.IntN(len(t.Skews))]
		}
		if f.At+f.For > d {
			return out
		}
		out = append(out, f)
		at += f.For + every/2 + time.Duration(r.Int64N(int64(every)))
	}
}
