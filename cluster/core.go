package cluster

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// This file holds the cluster's decisions: how a write ends, when an undo
// settles it, when a record is within the lease of an owner that left, when
// a node may serve its own copy, how a read ends, and what a node does with
// an operation another node sent it. They are plain functions and one state
// machine (writeRound): no goroutines, no network, no clock but the time
// passed in. The Node runs the I/O around them; the scenarios in
// testdata/core/*.txt drive them step by step (core_test.go).

// The outcomes of a write: the labels of scone_cluster_writes_total.
const (
	outcomeOK          = "ok"
	outcomeConflict    = "conflict"
	outcomeUnavailable = "unavailable"
	outcomeInDoubt     = "in_doubt"
)

// answer is an owner's answer to a write.
type answer uint8

const (
	// tookIt: the owner stored the write.
	tookIt answer = iota
	// conflicted: the owner holds a later version than the write's base,
	// fenced the write, or is within the lease of an owner that left.
	conflicted
	// refused: the owner sees other members than the writer, and ran
	// nothing (errViewsDiffer).
	refused
	// silent: no answer; the owner may have taken the write.
	silent
)

var answerNames = [...]string{tookIt: "took", conflicted: "conflict", refused: "refused", silent: "silent"}

func (a answer) String() string { return answerNames[a] }

// answerOf is the answer of an owner whose store operation returned v and
// err.
func answerOf(v Verdict, err error) answer {
	switch {
	case errors.Is(err, errViewsDiffer):
		return refused
	case err != nil:
		return silent
	case v == Conflict:
		return conflicted
	}
	return tookIt
}

// writeRound decides one write of a record, made from version base, to its
// owners, sent to all of them at once. Each owner takes it only on top of
// base (compare-and-set), so of two writes made from one version at most
// one succeeds: an owner that took the other refuses it. If an owner
// refuses it (a write came first there), or fewer than need owners took
// it, every owner that took it or did not answer is told to undo it, and
// the write fails with nothing changed; or, if one of them does not
// confirm that it can never hold the write (see undoResult.settles), in
// doubt: the write may still land.
//
// Two writes that race can each reach one owner first. The primary decides
// between them: when it took this write and another owner refused it
// holding a write of the same version (the rival, which the primary
// refused, and which its writer takes back), the write is sent to that
// owner again, up to maxRaceRetries times, so that once the rival is
// undone one of the two succeeds. If the rival stays (it was taken
// everywhere else before this write was read), both fail, with nothing
// changed.
//
// Its caller sends the write to the owners start returns, feeds each
// answer to answer (which names the owners to send it to again, after a
// pause), sends an undo to each owner undos names once decided, feeds each
// undo's result to undone, and reads the end from result.
type writeRound struct {
	owners  []string
	need    int
	rv      uint64       // the write's version
	per     []ownerWrite // by the owner's place in owners
	n       int          // owners that answered
	retries int
	took    int
	touched []string // took the write, or may have

	decided  bool
	outcome  string
	reason   string
	distrust bool // the primary holds a later version: this node's copy is behind
}

// ownerWrite is where one owner stands in a writeRound.
type ownerWrite struct {
	answered bool
	answer   answer
	held     uint64 // the version the owner said it holds
	settled  bool   // its undo settled the write (see undone)
}

// maxRaceRetries bounds how many times a write is sent again to an owner
// that holds a rival write of the same version (see writeRound).
const maxRaceRetries = 3

// newWriteRound starts the write of a record of version rv to owners (the
// primary first), which needs need of them to take it.
func newWriteRound(owners []string, need int, rv uint64) *writeRound {
	return &writeRound{owners: owners, need: need, rv: rv, per: make([]ownerWrite, len(owners))}
}

// start returns the owners to send the write to: all of them.
func (w *writeRound) start() []string { return w.owners }

// answer records owner's answer (and the version it holds: held), and,
// once every owner answered, returns the owners to send the write to
// again (see writeRound), or decides the write.
func (w *writeRound) answer(owner string, a answer, held uint64) []string {
	if w.decided {
		return nil
	}
	i := slices.Index(w.owners, owner)
	if i < 0 || w.per[i].answered {
		return nil
	}
	w.per[i].answered, w.per[i].answer, w.per[i].held = true, a, held
	w.n++
	if a == tookIt {
		w.took++
	}
	if (a == tookIt || a == silent) && !slices.Contains(w.touched, owner) {
		w.touched = append(w.touched, owner)
	}
	if w.n < len(w.owners) {
		return nil
	}
	conflict := false
	for _, p := range w.per {
		conflict = conflict || p.answer == conflicted
	}
	// Without the primary, a write that needs more than one owner fails:
	// the primary decides which of two racing writes may win. In degrade
	// mode (need 1) the others may take it alone.
	primary := w.per[0].answer
	if primary == tookIt && w.retries < maxRaceRetries {
		var again []string
		for j, o := range w.owners[1:] {
			if p := &w.per[j+1]; p.answer == conflicted && p.held == w.rv {
				again = append(again, o)
				p.answered = false
				w.n--
			}
		}
		if len(again) > 0 {
			w.retries++
			return again
		}
	}
	strict := w.need > 1 || len(w.owners) == 1
	switch {
	case primary == conflicted:
		w.distrust = true
		w.decide(outcomeConflict, "another request changed this client's state first")
	case primary == refused && strict:
		w.decide(outcomeUnavailable, "the primary owner of the client's state sees other members than this node")
	case primary == silent && strict:
		w.decide(outcomeUnavailable, "the primary owner of the client's state did not answer")
	case conflict:
		w.decide(outcomeConflict, "another request changed this client's state first")
	case w.took < w.need:
		w.decide(outcomeUnavailable, fmt.Sprintf("the new state reached %d of the %d nodes it needs", w.took, w.need))
	default:
		w.decided, w.outcome = true, outcomeOK
	}
	return nil
}

func (w *writeRound) decide(outcome, reason string) {
	w.decided, w.outcome, w.reason = true, outcome, reason
}

// undos returns the owners to tell to undo the write, once it failed: those
// that took it or did not answer.
func (w *writeRound) undos() []string {
	if !w.decided || w.outcome == outcomeOK {
		return nil
	}
	return w.touched
}

// undone records whether owner's undo settled the write there (false: no
// answer, or see undoResult.settles).
func (w *writeRound) undone(owner string, settles bool) {
	if slices.Contains(w.touched, owner) {
		w.per[slices.Index(w.owners, owner)].settled = settles
	}
}

// writeEnd is how a write ended.
type writeEnd struct {
	// outcome is outcomeOK, outcomeConflict, outcomeUnavailable or
	// outcomeInDoubt.
	outcome string
	// failed is how the write failed before its undos (outcomeConflict or
	// outcomeUnavailable; empty if it did not), and reason says why.
	failed, reason string
	// took is how many owners took the write, if it did not fail.
	took int
}

// result returns how the write ended, once decided and every undo
// answered. A failed write whose undo some owner did not settle is in
// doubt.
func (w *writeRound) result() writeEnd {
	if !w.decided {
		panic("cluster: result of an undecided write")
	}
	if w.outcome == outcomeOK {
		return writeEnd{outcome: outcomeOK, took: w.took}
	}
	end := writeEnd{outcome: w.outcome, failed: w.outcome, reason: w.reason}
	for _, o := range w.touched {
		if !w.per[slices.Index(w.owners, o)].settled {
			end.outcome = outcomeInDoubt
		}
	}
	return end
}

// inLease reports whether an owner of key for k copies, among members and
// the members that left (gone: when each left, not back since), left less
// than lease before now. Such an owner may only be cut off from the others'
// gossip, and still serve reads from its own copy within its lease: the
// record is not written until that lease has run out (this node as the
// writer, or as an owner asked to take the write).
func inLease(key string, k int, members []string, gone map[string]time.Time, now time.Time, lease time.Duration) bool {
	if lease == 0 {
		return false
	}
	var recent []string
	for name, at := range gone {
		if now.Sub(at) < lease && !slices.Contains(members, name) {
			recent = append(recent, name)
		}
	}
	if len(recent) == 0 {
		return false
	}
	all := append(slices.Clone(members), recent...)
	slices.Sort(all)
	for _, o := range Owners(key, all, k) {
		if slices.Contains(recent, o) {
			return true
		}
	}
	return false
}

// agreement is the run of answers in which another member saw the same
// members as this node, each within the lease of the one before: from since
// to last (Unix nanoseconds, when the calls were sent).
type agreement struct{ since, last int64 }

// observe records that the member answered a call sent at t with this
// node's view of the members.
func (a *agreement) observe(t int64, lease time.Duration) {
	if t-a.last > int64(lease) {
		a.since = t // a gap: what happened before is not vouched for
	}
	a.last = max(a.last, t)
}

// covers reports whether the member has agreed with this node without a
// gap from stored until within the lease before now.
func (a agreement) covers(stored, now int64, lease time.Duration) bool {
	return a.since <= stored && now-a.last < int64(lease)
}

// stored is what a node knows of its own copy of a record: the record, and
// the membership generation and time (Unix nanoseconds) it committed it in,
// at untrusted if it did not.
type stored struct {
	rec *Record
	gen uint64
	at  int64
}

// trust reports whether node self may serve a request from its own copy of
// a record without asking the other owners. It must be an owner and have
// committed the copy itself: it served the request that wrote it, every
// owner acknowledged it, and since then no other node has read, written or
// undone the record here, and membership has not changed (gen is the
// generation now). And every other owner must have answered this node
// since the commit with the same view of the members, with no gap longer
// than the lease, the last time within the lease (agreed; a missing owner
// has not): another node writes the record only after reading it here,
// unless the others have declared this node dead, which takes longer than
// the lease of silence. Degrade mode, which writes to fewer owners, never
// trusts one copy, and a lease of 0 never trusts.
func trust(self string, owners []string, degrade bool, lease time.Duration, s stored, gen uint64, agreed map[string]agreement, now int64) bool {
	if degrade || lease == 0 || !slices.Contains(owners, self) {
		return false
	}
	if s.rec == nil || s.at == untrusted || s.gen != gen {
		return false
	}
	for _, o := range owners {
		if o == self {
			continue
		}
		a, ok := agreed[o]
		if !ok || !a.covers(s.at, now, lease) {
			return false
		}
	}
	return true
}

// readFrom returns the members a node reads key's record from, for k
// copies, in a view of members that last changed at changed: its owners,
// the primary first; and, for the settle window after a change of the view
// (a member joined, came back or left), every other member after them.
//
// When the view changes, a record's owners change with it, and a new owner
// holds the record only once repair has copied it there: until then it
// answers with an older record, or none, and a read of the owners alone
// would serve that (a stale read, and a write built on it accepted by the
// owners' compare-and-set, which a stale owner passes). Treating a join as
// a departure (refusing the record for the window) would cost the window's
// availability on every record that moved; reading the owners of the
// previous view too (a union of views) needs the view the record was last
// written in, which a node that was cut off never saw. Every member of the
// view is a superset of both: a copy of the newest record is either still
// on a member that held it (repair drops a copy only once every owner of
// its view took it) or on an owner that took it from one, so the newest of
// the members' answers is the newest record; all must answer, as for
// owners. Writes still go to the owners of the view, made from that newest
// record: an owner that missed writes catches up by compare-and-set, and a
// stale read cannot be their base. The window must cover the repair that
// follows the change (its pushes each end within the peer call timeout, or
// are retried): after it, the owners hold the record.
func readFrom(key string, k int, members []string, changed, now time.Time, window time.Duration) []string {
	owners := Owners(key, members, k)
	if now.Sub(changed) >= window {
		return owners
	}
	out := slices.Clone(owners)
	for _, m := range members {
		if !slices.Contains(owners, m) {
			out = append(out, m)
		}
	}
	return out
}

// The outcomes of a read from the owners: the labels of
// scone_cluster_fetches_total.
const (
	fetchFound       = "found"
	fetchNew         = "new"
	fetchUnavailable = "unavailable"
	fetchLocal       = "local"
)

// newest decides a read from the owners' answers (found: the record each
// owner that answered holds, nil if none) and how many did not answer. The
// newest record wins; but every owner must answer (else the read is
// unavailable): an owner that missed writes while it was cut off holds an
// old version, and only the others can tell.
func newest(found []*Record, failed int) (*Record, string) {
	if failed > 0 {
		return nil, fetchUnavailable
	}
	var out *Record
	for _, r := range found {
		if r.Newer(out) {
			out = r
		}
	}
	if out == nil {
		return nil, fetchNew
	}
	return out, fetchFound
}

// serveStore applies a write or repair another node sent (or this node
// made) to st, and returns the verdict and the version held afterwards. A
// write (not a repair) of a record within the lease of an owner that left
// (settling) is refused: that owner may still serve reads from its copy.
func serveStore(st *store, rec *Record, base uint64, repair, settling bool) (Verdict, uint64) {
	if !repair && settling {
		return Conflict, 0
	}
	return st.put(rec, base, repair)
}
