package chaos

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// FaultKind is a kind of fault the nemesis injects.
type FaultKind string

// The fault kinds.
const (
	Kill      FaultKind = "kill"      // SIGKILL, restart after For
	Pause     FaultKind = "pause"     // SIGSTOP, SIGCONT after For
	Partition FaultKind = "partition" // no byte crosses a link for For
	Latency   FaultKind = "latency"   // a link delays every chunk by Delay for For
	Skew      FaultKind = "skew"      // a process's clock is off by Delay for For
)

// Fault is one fault of a schedule.
type Fault struct {
	// At is when the fault starts, from the start of the run, if the
	// previous ones kept to time (the nemesis may wait for the system to
	// settle first, which delays the rest).
	At     time.Duration
	Kind   FaultKind
	Target string        // a process, or a link "from>to"
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
	for _, c := range []choice{{Kill, t.Kill}, {Pause, t.Pause}, {Partition, t.Links}, {Latency, t.Links}, {Skew, t.Skew}} {
		if len(c.targets) > 0 && (c.kind != Skew || len(t.Skews) > 0) {
			kinds = append(kinds, c)
		}
	}
	if len(kinds) == 0 || every <= 0 {
		return nil
	}
	var out []Fault
	at := every / 2
	for {
		c := kinds[r.IntN(len(kinds))]
		f := Fault{At: at, Kind: c.kind, Target: c.targets[r.IntN(len(c.targets))],
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
