package cluster

import (
	"math"
	"sync"
	"time"
)

// store is a node's share of the records, in memory.
type store struct {
	mu      sync.Mutex
	entries map[string]*entry
}

// entry is the record a node holds for a key, and the one it held before
// the last write, so that a write that failed at another owner can be
// taken back (undo).
type entry struct {
	cur, prev *Record
	// at is when this node committed cur (Unix nanoseconds): it served the
	// request that wrote cur, and every owner acknowledged it. gen is the
	// membership generation it was read in. Any other way a record gets
	// here (another node's write or repair), and any other node reading or
	// undoing it, resets at to untrusted: the node then reads every owner.
	gen uint64
	at  int64
}

// untrusted is entry.at for a copy this node cannot vouch for alone.
const untrusted = math.MinInt64

func newStore() *store { return &store{entries: map[string]*entry{}} }

// get returns the record of key, or nil.
func (s *store) get(key string) *Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entries[key]; e != nil {
		return e.cur
	}
	return nil
}

// getStored returns the record of key, and the membership generation and
// time it was stored in.
func (s *store) getStored(key string) (rec *Record, gen uint64, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entries[key]; e != nil {
		return e.cur, e.gen, e.at
	}
	return nil, 0, 0
}

// put applies a write or repair (see Accept) and returns its verdict and the
// version held afterwards. The copy starts untrusted (see commit).
func (s *store) put(rec *Record, base uint64, repair bool) (Verdict, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[rec.Key]
	if e == nil {
		e = &entry{}
	}
	v := Accept(e.cur, rec, base, repair)
	if v != Accepted {
		return v, e.cur.RV
	}
	if repair {
		e.prev = nil
	} else {
		e.prev = e.cur
	}
	e.cur, e.at = rec, untrusted
	s.entries[rec.Key] = e
	return v, rec.RV
}

// commit marks rec, if still held, as committed by this node at time at,
// from a read in membership generation gen.
func (s *store) commit(rec *Record, gen uint64, at int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entries[rec.Key]; e != nil && e.cur == rec {
		e.gen, e.at = gen, at
	}
}

// distrust marks key's copy as one this node cannot vouch for alone:
// another node is serving the client.
func (s *store) distrust(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entries[key]; e != nil {
		e.at = untrusted
	}
}

// undo takes back the write of version (rv, stamp) of key if it is still
// the one held, and reports whether it did.
func (s *store) undo(key string, rv uint64, stamp int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e == nil {
		return false
	}
	e.at = untrusted // a write failed somewhere: another owner may hold it
	if e.cur.RV != rv || e.cur.Stamp != stamp {
		return false
	}
	if e.prev == nil {
		delete(s.entries, key)
		return true
	}
	e.cur, e.prev = e.prev, nil
	return true
}

// drop removes key's record if it is still the one given.
func (s *store) drop(key string, rec *Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entries[key]; e != nil && e.cur == rec {
		delete(s.entries, key)
	}
}

// keys lists the keys held.
func (s *store) keys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.entries))
	for k := range s.entries {
		out = append(out, k)
	}
	return out
}

// sweep drops the records whose every SCONE has expired, and returns how
// many it dropped.
func (s *store) sweep(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, e := range s.entries {
		if !now.Before(e.cur.Expires()) {
			delete(s.entries, k)
			n++
		}
	}
	return n
}

// len returns how many records are held.
func (s *store) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.entries)
}
