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
	// fences are writes taken back before they arrived, by key.
	fences  map[string][]fence
	nfences int
}

// fence is a write that an undo found not held here: it is refused if it
// arrives later (a request held up in the network lands when it heals), so
// the writer can report the write as having changed nothing.
type fence struct {
	rv    uint64
	stamp int64
	at    time.Time
}

// Fences are kept this long, and at most this many: a write held up for
// longer can still land, and past the bound an undo does not fence (its
// writer reports the outcome as in doubt).
const (
	fenceTTL  = 10 * time.Minute
	maxFences = 1 << 16
)

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
	// spread is set once cur has been copied to other nodes by repair or
	// a hand-over: an undo here no longer takes it back everywhere.
	spread bool
}

// untrusted is entry.at for a copy this node cannot vouch for alone.
const untrusted = math.MinInt64

func newStore() *store { return &store{entries: map[string]*entry{}, fences: map[string][]fence{}} }

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
	if !repair && s.isFenced(rec) {
		if e.cur == nil {
			return Conflict, 0
		}
		return Conflict, e.cur.RV
	}
	v := Accept(e.cur, rec, base, repair)
	if v != Accepted {
		return v, e.cur.RV
	}
	// A repair, too, keeps the record it replaces: repair copies what an
	// owner holds, which may be a write still in progress there, and the
	// undo of that write, if it fails, must bring this node back to the
	// record it held (acknowledged, and perhaps on no other live owner but
	// one), not leave it without any (testdata/core/repair_undone.txt).
	e.prev = e.cur
	e.cur, e.at, e.spread = rec, untrusted, false
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

// undoResult is what an undo did on one node.
type undoResult struct {
	undone bool   // the write was held, and is taken back
	spread bool   // but it had been copied to other nodes (repair)
	fenced bool   // the write was not held, and is refused if it arrives
	held   uint64 // the version held afterwards (0: none)
}

// settles reports whether, after this undo, the node can never hold the
// write of version rv, nor have passed it on: it took the write back before
// repair copied it anywhere, or fenced it while holding no newer version (a
// newer one may have been built on it).
func (u undoResult) settles(rv uint64) bool {
	return u.undone && !u.spread || u.fenced && u.held <= rv
}

// spreadIf marks rec as copied to other nodes (see entry.spread) if it is
// still the record held, and reports whether it is; call it before sending
// the copy.
func (s *store) spreadIf(rec *Record) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entries[rec.Key]; e != nil && e.cur == rec {
		e.spread = true
		return true
	}
	return false
}

// spread returns the record of key, or nil, marking it as copied to other
// nodes (see entry.spread); call it before sending the copy.
func (s *store) spread(key string) *Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.entries[key]; e != nil {
		e.spread = true
		return e.cur
	}
	return nil
}

// undo takes back the write of version (rv, stamp) of key if it is still
// the one held; if it is not held, it fences the write (see fence).
func (s *store) undo(key string, rv uint64, stamp int64, now time.Time) undoResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	if e != nil {
		e.at = untrusted // a write failed somewhere: another owner may hold it
		if e.cur.RV == rv && e.cur.Stamp == stamp {
			spread := e.spread
			if e.prev == nil {
				delete(s.entries, key)
				return undoResult{undone: true, spread: spread}
			}
			e.cur, e.prev = e.prev, nil
			return undoResult{undone: true, spread: spread, held: e.cur.RV}
		}
	}
	var held uint64
	if e != nil {
		held = e.cur.RV
	}
	return undoResult{fenced: s.addFence(key, fence{rv: rv, stamp: stamp, at: now}), held: held}
}

// addFence records f for key, and reports whether it could (the store keeps
// at most maxFences).
func (s *store) addFence(key string, f fence) bool {
	for _, g := range s.fences[key] {
		if g.rv == f.rv && g.stamp == f.stamp {
			return true
		}
	}
	if s.nfences >= maxFences {
		return false
	}
	s.fences[key] = append(s.fences[key], f)
	s.nfences++
	return true
}

// isFenced reports whether rec is a write that was taken back before it
// arrived.
func (s *store) isFenced(rec *Record) bool {
	for _, f := range s.fences[rec.Key] {
		if f.rv == rec.RV && f.stamp == rec.Stamp {
			return true
		}
	}
	return false
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
	for k, fs := range s.fences {
		kept := fs[:0]
		for _, f := range fs {
			if now.Sub(f.at) < fenceTTL {
				kept = append(kept, f)
			}
		}
		s.nfences -= len(fs) - len(kept)
		if len(kept) == 0 {
			delete(s.fences, k)
		} else {
			s.fences[k] = kept
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
