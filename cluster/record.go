package cluster

import (
	"time"

	"github.com/scone-project/scone/internal/hook"
)

// Record is what the cluster keeps for one client: all of the client's
// SCONEs, with a record version that grows by one at every write.
type Record struct {
	// Key names the client (a hash of its identity).
	Key string
	// RV is the record's version.
	RV uint64
	// Stamp breaks a tie between two records of the same version, which only
	// failures mid-write can make: the later write wins. It is the writing
	// node's clock, in Unix nanoseconds; the tie needs a failure detected
	// (about a second), far longer than the clocks of a LAN disagree.
	Stamp int64
	// SCONEs are the client's sealed SCONEs.
	SCONEs [][]byte
	// Copies is how many owners keep the record (the k of the service that
	// wrote it last).
	Copies int
}

// Newer reports whether r is newer than o (nil is older than anything).
func (r *Record) Newer(o *Record) bool {
	if o == nil {
		return r != nil
	}
	if r == nil {
		return false
	}
	if r.RV != o.RV {
		return r.RV > o.RV
	}
	return r.Stamp > o.Stamp
}

// Expires returns the latest expiry of the record's SCONEs: after it the
// record holds nothing live and may be dropped.
func (r *Record) Expires() time.Time {
	var t time.Time
	for _, tok := range r.SCONEs {
		if h, err := hook.Peek(tok); err == nil && h.Expires.After(t) {
			t = h.Expires
		}
	}
	return t
}

// Verdict is a replica's answer to a write.
type Verdict uint8

// The verdicts.
const (
	// Accepted: the replica stored the record.
	Accepted Verdict = iota
	// Conflict: the replica holds a record written on top of the write's
	// base: another write came first, and this one must fail (Aborted).
	Conflict
	// Stale: a repair brought a record no newer than the one held; nothing
	// changed, and nothing needs to.
	Stale
)

// String returns the verdict's name: "accepted", "conflict" or "stale".
func (v Verdict) String() string {
	switch v {
	case Accepted:
		return "accepted"
	case Conflict:
		return "conflict"
	case Stale:
		return "stale"
	}
	return "unknown"
}

// Accept decides a write of rec at a replica holding held (nil if none).
//
// A write (repair false) was made from the record of version base: it is
// accepted if the replica holds nothing newer than base, so a replica that
// missed writes catches up, and refused with Conflict if the replica holds
// a record of a later version than base: another write, made from the same
// base or a later one, came first. This is the compare-and-set that keeps a
// paused node, waking up with an old base, from overwriting a newer record.
// The same write arriving twice (repair copied it first) is accepted.
//
// A repair (repair true) copies an acknowledged record: it is accepted if it
// is newer than the one held, and otherwise reported Stale.
func Accept(held *Record, rec *Record, base uint64, repair bool) Verdict {
	if repair {
		if rec.Newer(held) {
			return Accepted
		}
		return Stale
	}
	if held != nil && held.RV > base && !held.same(rec) {
		return Conflict
	}
	return Accepted
}

// same reports whether r and o are the same write (repair may bring a
// write to an owner before the writer does).
func (r *Record) same(o *Record) bool { return r.RV == o.RV && r.Stamp == o.Stamp }
