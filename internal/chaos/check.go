package chaos

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"
)

// Report is what the checker found in a history.
type Report struct {
	Ops, OK, Refused, Failed, Unknown int
	// Violations describe every broken promise; empty means none.
	Violations []string
	// Unchecked lists sessions whose linearizability check ran out of
	// time (neither proven nor refuted).
	Unchecked []int
	// Illegal holds, per session whose history is not linearizable,
	// porcupine's linearization info of the first segment that is not, for
	// Visualize.
	Illegal map[int]porcupine.LinearizationInfo
	models  map[int]porcupine.Model
}

// Check checks a history: each session's operations must be linearizable
// against the cart model (a change of unknown outcome taking effect at most
// settle after its invocation; timeout bounds the search per segment), the
// versions each session observes must never go back, and no SCONE may
// have been opened after its expiry.
func Check(model Cart, ops []Op, settle, timeout time.Duration) Report {
	r := Report{Ops: len(ops), Illegal: map[int]porcupine.LinearizationInfo{}}
	bySess := map[int][]Op{}
	for _, op := range ops {
		bySess[op.Session] = append(bySess[op.Session], op)
		switch op.Outcome {
		case OK:
			r.OK++
		case Refused:
			r.Refused++
		case Failed:
			r.Failed++
		case Unknown:
			r.Unknown++
		}
	}
	r.models = map[int]porcupine.Model{}
	for _, id := range slices.Sorted(maps.Keys(bySess)) {
		segs, inits := segments(Operations(bySess[id], settle), 256)
		for i, seg := range segs {
			m := model.from(inits[i])
			m.Partition = nil // one session at a time, to name the one that fails
			res := porcupine.CheckOperationsTimeout(m, seg, timeout)
			if res == porcupine.Illegal {
				_, info := porcupine.CheckOperationsVerbose(m, seg, timeout)
				r.Illegal[id], r.models[id] = info, m
				r.Violations = append(r.Violations, fmt.Sprintf("session %d: its history is not linearizable (a lost update or a stale read) from %v",
					id, time.Duration(seg[0].Call)))
				break
			}
			if res == porcupine.Unknown && !slices.Contains(r.Unchecked, id) {
				r.Unchecked = append(r.Unchecked, id)
			}
		}
	}
	r.Violations = append(r.Violations, CheckVersions(ops)...)
	r.Violations = append(r.Violations, CheckExpiry(ops)...)
	return r
}

// Visualize writes porcupine's HTML view of each session whose history is
// not linearizable (its first segment that is not) into dir, and returns
// the files written.
func (r Report) Visualize(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var files []string
	for _, id := range slices.Sorted(maps.Keys(r.Illegal)) {
		path := filepath.Join(dir, fmt.Sprintf("session-%d.html", id))
		if err := porcupine.VisualizePath(r.models[id], r.Illegal[id], path); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	return files, nil
}

// CheckVersions reports every OK operation after which a session holds a
// SCONE of a service older than one it held after an earlier OK operation:
// a holder keeps the newest version, so versions never go back. A server
// may end a session (the inventory when nothing is reserved, the cart at
// checkout), and the next SCONE of that service starts from version 1
// again: so a service the session no longer holds after an operation, or
// any after a checkout, starts over.
func CheckVersions(ops []Op) []string {
	var out []string
	bySess := map[int][]Op{}
	for _, op := range ops {
		if op.Outcome == OK && op.Versions != nil {
			bySess[op.Session] = append(bySess[op.Session], op)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(bySess)) {
		s := bySess[id]
		slices.SortStableFunc(s, func(a, b Op) int { return int(a.Invoke - b.Invoke) })
		seen := map[string]uint64{}
		for _, op := range s {
			if op.Input.Kind == Checkout {
				clear(seen)
			}
			for svc := range seen {
				if _, ok := op.Versions[svc]; !ok {
					delete(seen, svc) // the session ended
				}
			}
			for svc, v := range op.Versions {
				if v < seen[svc] {
					out = append(out, fmt.Sprintf("session %d: %s version %d after %d (at %v)", id, svc, v, seen[svc], op.Invoke))
				}
				seen[svc] = max(seen[svc], v)
			}
		}
	}
	return out
}

// CheckExpiry reports every OK operation served by a process whose clock
// was already past the expiry of the SCONE it had to open when the call
// was invoked (its skew added): it should have refused that SCONE as
// expired.
func CheckExpiry(ops []Op) []string {
	var out []string
	for _, op := range ops {
		if op.Outcome != OK || !op.HasExpiry || !op.SkewKnown {
			continue
		}
		if late := op.Invoke + op.Skew - op.Expires; late > 0 {
			out = append(out, fmt.Sprintf("session %d: %s via %s opened a SCONE %v after its expiry (clock skew %v)",
				op.Session, op.Input.Kind, op.Served, late, op.Skew))
		}
	}
	return out
}

// CheckRetired reports every OK operation served by a process whose clock
// was already past the retirement of the key that sealed the SCONE it had
// to open (retired: key ID → retirement, as an offset from the History's
// start), its skew added, when the call was invoked: it should have
// refused that SCONE (unknown_key).
func CheckRetired(ops []Op, retired map[uint32]time.Duration) []string {
	var out []string
	for _, op := range ops {
		at, ok := retired[op.KeyID]
		if op.Outcome != OK || !op.HasExpiry || !op.SkewKnown || !ok {
			continue
		}
		if late := op.Invoke + op.Skew - at; late >= 0 {
			out = append(out, fmt.Sprintf("session %d: %s via %s opened a SCONE of key %d %v after the key was retired (clock skew %v)",
				op.Session, op.Input.Kind, op.Served, op.KeyID, late, op.Skew))
		}
	}
	return out
}
