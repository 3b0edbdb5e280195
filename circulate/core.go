package circulate

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/circulate/circulatepb"
)

// rules are circulate's decisions: pure functions of a relay's copies, of
// what it knows of the group, and of the times it is given. now is the
// Store's clock (Config.Now less MaxClockSkew), by which copies expire and
// their holding times are measured; mono is the monotonic clock
// (time.Now()), by which leases run, so no clock skew stretches them. The
// rules start no goroutine, touch no socket and read no clock: the Store's
// I/O layer (access.go, circulation.go, peer.go) gathers their inputs and
// carries out what they decide, and the scenarios under testdata/ replay
// them exactly (core_test.go).
type rules struct {
	self   string
	copies int
	dwell  time.Duration
	lease  time.Duration
	// settle is how long a copy must have been held before other copies
	// give way to it: a hand-off or write that put it there and then
	// failed takes it back (UNDO) within its own time bound, shorter than
	// this.
	settle time.Duration
}

func newRules(cfg Config) rules {
	return rules{self: cfg.Name, copies: cfg.Copies, dwell: cfg.Dwell, lease: cfg.Lease, settle: 3 * cfg.Timeout}
}

// knowledge is what a relay knows of its group when it decides.
type knowledge struct {
	members  []string             // the live relays, sorted, this one included
	joined   map[string]time.Time // live relay → when it came up at its address (by now)
	departed map[string]time.Time // relay that left less than the lease ago → when (by mono)
}

// live reports whether it is a copy that has not expired at now.
func live(it *item, now time.Time) bool { return it != nil && it.expires.After(now) }

// servesAlone reports whether this relay may serve a read from its copy it
// alone: it committed the copy itself (item.committed), less than the
// lease ago. A copy another relay put here is never trusted alone: that
// relay may have given up on the put (it timed out) and gone on writing
// elsewhere before the put landed.
func (r rules) servesAlone(it *item, now, mono time.Time) bool {
	return live(it, now) && !it.committed.IsZero() && mono.Sub(it.committed) < r.lease
}

// holds reports whether holder h still holds its copy of it, as far as
// this relay can tell: h is live, and has not restarted (come up again at
// a new address) since this relay took its own copy, which was placed on h
// at about the same time.
func (r rules) holds(k knowledge, h string, it *item) bool {
	if h == r.self {
		return true
	}
	joined, ok := k.joined[h]
	return ok && slices.Contains(k.members, h) && !joined.After(it.since)
}

// actingPrimary reports whether this relay moves it: it is the first of its
// holders that still holds a copy.
func (r rules) actingPrimary(k knowledge, it *item) bool {
	for _, h := range it.holders {
		if h == r.self {
			return true
		}
		if r.holds(k, h, it) {
			return false
		}
	}
	return false
}

// goneLately reports whether a holder of it listed before this relay left
// the group less than the lease ago. It may only be cut off from the
// others' gossip, and still serve reads from a copy it committed within its
// lease: the copies are not taken over before that lease has run out.
func (r rules) goneLately(k knowledge, it *item, mono time.Time) bool {
	for _, h := range it.holders {
		if h == r.self {
			return false
		}
		if at, ok := k.departed[h]; ok && mono.Sub(at) < r.lease {
			return true
		}
	}
	return false
}

// lostHolder reports whether a holder of it lost its copy (it left, or
// restarted), or there are fewer holders than copies and more relays.
func (r rules) lostHolder(k knowledge, it *item) bool {
	for _, h := range it.holders {
		if !r.holds(k, h, it) {
			return true
		}
	}
	return len(it.holders) < r.copies && len(k.members) > len(it.holders)
}

// step is what a relay does with one of its copies at a pass of its loop.
type step int

const (
	stepNone    step = iota
	stepExpire       // drop the expired copy
	stepHandoff      // move the copies to the next hop's relays
	stepCheck        // ask the primary whether this copy is still current
)

var stepNames = [...]string{"none", "expire", "handoff", "check"}

func (s step) String() string { return stepNames[s] }

// next returns what this relay does with its copy it at a pass: the acting
// primary hands the copies on once it has held them for the dwell, at once
// after a write (if there are relays to move them to), and at once when a
// holder lost its copy (unless a holder before it left within the lease).
func (r rules) next(k knowledge, it *item, now, mono time.Time) step {
	if !live(it, now) {
		return stepExpire
	}
	acting := r.actingPrimary(k, it)
	held := now.Sub(it.since)
	switch {
	case acting && r.goneLately(k, it, mono):
		return stepNone // a holder before this one may still be serving it
	case acting && (held >= r.dwell || it.written && r.moves(k) || r.lostHolder(k, it)):
		return stepHandoff
	case !acting && held >= 3*r.dwell:
		return stepCheck
	}
	return stepNone
}

// read decides how a read starts from this relay's copy local: served
// from it alone (true), or by asking the others (false). A relay that sees
// fewer live relays than copies answers no read (Unavailable), even from a
// copy it leased: the write of the reply would fail, after the upstream
// server had run the call, where refusing the read now sends nothing
// upstream.
func (r rules) read(k knowledge, local *item, now, mono time.Time) (alone bool, err error) {
	if err := r.canQuery(k); err != nil {
		return false, err
	}
	return r.servesAlone(local, now, mono), nil
}

// canQuery returns an error (Unavailable) if this relay sees fewer live
// relays than the copies each client needs: every copy of a client's state
// may be on relays it cannot see (it is cut off, or the others failed).
func (r rules) canQuery(k knowledge) error {
	if len(k.members) < r.copies {
		return scone.NewError(scone.CodeUnavailable, fmt.Sprintf(
			"circulate: %d live relays, fewer than the %d copies each client needs", len(k.members), r.copies))
	}
	return nil
}

// answer is one relay's reply to a query.
type answer struct {
	member  string
	it      *item
	age     time.Duration // how long the member has held it
	movedTo string
	err     error
}

// newest returns the newest live copy among answers, and how many relays
// did not answer.
func newest(answers []answer, now time.Time) (best *item, missing int) {
	for _, a := range answers {
		switch {
		case a.err != nil:
			missing++
		case live(a.it, now) && a.it.newer(best):
			best = a.it
		}
	}
	return best, missing
}

// movedTo returns where the answers say the copies went, when no relay
// holds them and every one answered: a hand-off ran between the answers.
func (r rules) movedTo(answers []answer) []string {
	var moved []string
	for _, a := range answers {
		if a.err == nil && a.it == nil && a.movedTo != "" && a.movedTo != r.self && !slices.Contains(moved, a.movedTo) {
			moved = append(moved, a.movedTo)
		}
	}
	return moved
}

// pick chooses a query's result from the newest copy the others gave
// (best), how many did not answer, and this relay's own copy: the newest
// wins; with a relay missing the query fails (Unavailable), since that
// relay may hold a newer copy, or the only one; with none anywhere the
// client has no SCONEs (nil, nil).
func (r rules) pick(best *item, missing int, local *item, now time.Time) (*item, error) {
	if live(local, now) && local.newer(best) {
		best = local // this relay's own copy is one of the answers
	}
	if missing > 0 {
		return nil, errMissing{missing}
	}
	return best, nil
}

// errMissing is a query some relays did not answer.
type errMissing struct{ n int }

func (e errMissing) Error() string {
	return fmt.Sprintf("circulate: %d relays did not answer (or see other live relays)", e.n)
}

// moves reports whether the copies move from relay to relay: there are
// more live relays than copies. With as many or fewer, every live relay
// holds every client's copies, and a hand-off changes only the hop and the
// primary: the group replicates statically (see Store.Circulating).
func (r rules) moves(k knowledge) bool { return len(k.members) > r.copies }

// handoff returns the copy of the next hop of it: on the relays
// nextHolders gives over the live members (none: alone and leaving).
func (r rules) handoff(k knowledge, it *item) *item {
	return &item{
		key: it.key, gen: it.gen, hop: it.hop + 1, scones: it.scones, expires: it.expires,
		holders: nextHolders(it.key, it.hop+1, k.members, r.copies, it.holders),
	}
}

// remote returns the holders of it but this relay.
func (r rules) remote(it *item) []string {
	var out []string
	for _, h := range it.holders {
		if h != r.self {
			out = append(out, h)
		}
	}
	return out
}

// handoffResult is what a relay does after sending a hand-off's puts.
type handoffResult struct {
	outcome string   // the handoffs metric's label: ok, failed or stale
	undo    []string // relays to take the put back on
	retire  []string // holders of the old hop to drop their copies
	keep    *item    // the copy this relay keeps (nil: it moved away)
	moved   string   // where the copies went, when this relay keeps none
}

// handingOff returns the copy a relay holds while it hands it on: from
// its first put, a relay of the next hop may take the copies and, as
// their primary, commit a write without this relay (it need not be one of
// the next holders), so it serves no read from it alone any more, whatever
// the outcome (a put held up in the network may land after the sender gave
// up on it).
func (r rules) handingOff(it *item) *item {
	if it.committed.IsZero() {
		return it
	}
	c := *it
	c.committed = time.Time{}
	return &c
}

// handedOff decides the end of a hand-off of it as next: took are the
// relays that took the put, refused the youngest age of a newer copy held
// by one that refused it (nil: none refused), and failed whether one did
// not answer. Success retires the old hop; a refusal from a copy held long
// enough that no failed hand-off can take it back means this copy is left
// over; otherwise the relays that took the put go back to what they held.
func (r rules) handedOff(it, next *item, took []string, refused *time.Duration, failed bool, now, mono time.Time) handoffResult {
	switch {
	case refused != nil && *refused < r.settle:
		return handoffResult{outcome: "failed", undo: took, keep: it}
	case refused != nil:
		return handoffResult{outcome: "stale", undo: took, moved: next.primary()} // newer copies are elsewhere
	case failed:
		return handoffResult{outcome: "failed", undo: took, keep: it}
	}
	res := handoffResult{outcome: "ok", moved: next.primary()}
	for _, h := range it.holders {
		if h != r.self && !slices.Contains(next.holders, h) {
			res.retire = append(res.retire, h)
		}
	}
	if slices.Contains(next.holders, r.self) {
		kept := *next
		kept.since = now
		if len(next.holders) >= r.copies && next.primary() == r.self {
			// Every holder took it, and this relay is their primary: the
			// next hand-off, which may leave it out, starts here. A
			// holder that is not the primary serves nothing alone: the
			// primary may hand the copies on to relays without it, and
			// their new primary take writes before it is told. A relay
			// that sees fewer relays than copies (it may be cut off)
			// moves its copies to itself alone, and never serves them
			// without asking.
			kept.committed = mono
		}
		res.keep, res.moved = &kept, ""
	}
	return res
}

// putResult is what a relay does with a Put another relay sent: the reply,
// and the copy it now holds (set is false when it keeps what it had).
type putResult struct {
	reply *pb.PutReply
	err   error // the call fails
	set   bool
	it    *item
}

// put decides a Put of in, in mode, on top of this relay's copy cur (base:
// the generation an UPDATE was made from); viewsDiffer is a sender that
// sees other live relays (one of the two may be cut off from the others'
// gossip: a copy it moves or writes is not to be mixed with theirs; an
// UNDO is always taken).
func (r rules) put(mode pb.PutRequest_Mode, cur, in *item, base uint64, viewsDiffer bool, now time.Time) putResult {
	if viewsDiffer && mode != pb.PutRequest_UNDO {
		return putResult{reply: &pb.PutReply{ViewsDiffer: true}}
	}
	ok := &pb.PutReply{Ok: true}
	switch mode {
	case pb.PutRequest_HANDOFF:
		switch {
		case cur != nil && (cur.newer(in) || cur.same(in) && !cur.identical(in)):
			// A newer copy, or this hop of the copy placed on other
			// holders by another hand-off of it: taking it as its own
			// would let the sender's UNDO take back the other's.
			return putResult{reply: &pb.PutReply{AgeMs: uint64(max(0, now.Sub(cur.since).Milliseconds()))}}
		case !in.same(cur):
			next := *in
			next.prev = cur.withoutPrev() // for the UNDO of a hand-off that fails
			return putResult{reply: ok, set: true, it: &next}
		}
		return putResult{reply: ok}
	case pb.PutRequest_UPDATE:
		switch {
		case cur != nil && cur.gen > base:
			// Another write came first: a conflict.
			return putResult{reply: &pb.PutReply{}}
		case cur == nil || cur.gen != base || cur.hop != in.hop:
			// It holds no copy of the write's generation and hop: it
			// lost its copy (it restarted; the primary recreates it at
			// its next hand-off), or the sender is the primary of a hop
			// whose hand-off has not reached this holder yet (it holds
			// the hop before, or none). A relay of the next hop takes a
			// hand-off's put, and then a write, while the put to the
			// others is still on its way. No other write came first:
			// not a conflict.
			return putResult{err: errNoCopy}
		}
		next := *in
		next.prev = cur.withoutPrev()
		return putResult{reply: ok, set: true, it: &next}
	case pb.PutRequest_UNDO:
		if in.identical(cur) {
			return putResult{reply: ok, set: true, it: cur.prev}
		}
		return putResult{reply: ok}
	}
	return putResult{err: fmt.Errorf("circulate: unknown put mode %d", mode)}
}

// errRefused is a Put a holder refused: it holds a newer copy, or another
// write came first.
var errRefused = errors.New("circulate: a holder refused the copy")

// errNotTaken is a Put a holder answered without taking it, where no
// other write came first (FailedPrecondition on the wire): the sender's
// write fails with nothing changed (see written), not as a conflict.
var errNotTaken = errors.New("circulate: the holder took nothing")

// errNoCopy is an UPDATE on a relay that holds no copy of the write's
// generation and hop to update (see put).
var errNoCopy = fmt.Errorf("%w: it holds no copy of that generation and hop", errNotTaken)

// retires reports whether a Retire of gen and hop drops cur: it is not
// newer.
func retires(cur *item, gen, hop uint64) bool {
	return cur != nil && !cur.newer(&item{gen: gen, hop: hop})
}

// route is where a write goes from a relay's slot state st.
type writeRoute struct {
	forward string // the relay to pass the write on to
	err     error  // the write fails here
	here    bool   // this relay writes (cur: its live copy, nil to create)
	cur     *item
}

// routeWrite decides where a write (create: no relay held the client's
// copies at the read) goes from a relay whose slot holds st. A write for a
// primary that no longer holds its copy (it left, or restarted) fails
// Unavailable, sent nowhere: the first holder that still holds one hands
// the copies on at once (next), and the client's retry finds the new
// primary.
func (r rules) routeWrite(k knowledge, st *slotState, create bool, now time.Time) writeRoute {
	cur := st.it
	if !live(cur, now) {
		cur = nil
	}
	switch {
	case cur == nil && st.movedTo != "" && st.movedTo != r.self:
		return writeRoute{forward: st.movedTo}
	case cur == nil && !create:
		return writeRoute{err: scone.NewError(scone.CodeUnavailable, "circulate: the client's SCONEs moved; retry")}
	case cur != nil && !r.holds(k, cur.primary(), cur):
		return writeRoute{err: errPrimaryGone}
	case cur != nil && cur.primary() != r.self:
		return writeRoute{forward: cur.primary()}
	}
	return writeRoute{here: true, cur: cur}
}

// errPrimaryGone is a write for a primary that left the group or lost its
// copy: nothing was sent.
var errPrimaryGone = scone.NewError(scone.CodeUnavailable, "circulate: the primary holder of the client's SCONEs left; its copies are being handed on; retry")

// holdersFor returns the holders of a new client's first copies, written
// by this relay: itself, then the others of hop 0.
func (r rules) holdersFor(k knowledge, key string) []string {
	var others []string
	for _, m := range k.members {
		if m != r.self {
			others = append(others, m)
		}
	}
	return append([]string{r.self}, placement(key, 0, others, r.copies-1)...)
}

// written decides the end of a write that some holders refused (refused)
// or did not answer (failed), after undoing it where it was taken (undone:
// every one confirmed); nil if it succeeded. A holder the write was never
// sent to (errNotSent: it is not a live relay) cannot take it later, nor
// can one that answered that it took nothing (errNotTaken: it holds no
// copy of the write's generation and hop, or the client's copy was busy
// there): if those are the only failures and every undo was confirmed,
// nothing changed, and the write fails Unavailable rather than in doubt.
// Only a holder that refused because another write came first (refused)
// makes it a conflict.
func written(refused, failed error, undone bool) error {
	if refused == nil && failed == nil {
		return nil
	}
	if !undone {
		failed = errors.Join(failed, errors.New("circulate: a holder that took the write did not confirm its undo"))
	}
	switch {
	case failed != nil && every(failed, func(e error) bool { return errors.Is(e, errNotSent) || errors.Is(e, errNotTaken) }):
		return scone.WrapError(scone.CodeUnavailable, "circulate: a holder of the client's copies is not a live relay, or took nothing; nothing changed", failed)
	case failed != nil:
		return scone.WrapError(scone.CodeInDoubt, "circulate: a holder of the client's copies did not answer: it may hold the new state yet", failed)
	}
	return scone.NewError(scone.CodeConflict, "circulate: another relay changed this client's state first")
}

// errNotSent is a call to another relay that was never sent: the relay is
// not live in this one's view, so there is no connection to it.
var errNotSent = errors.New("circulate: not sent")

// notSent reports whether every error joined in err is errNotSent.
func notSent(err error) bool {
	return every(err, func(e error) bool { return errors.Is(e, errNotSent) })
}

// every reports whether is holds for every error joined in err.
func every(err error, is func(error) bool) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !every(e, is) {
				return false
			}
		}
		return len(j.Unwrap()) > 0
	}
	return is(err)
}

// checkVerdict is what a holder that is not the acting primary does with a
// copy that has not moved for long, after asking the primary.
type checkVerdict int

const (
	checkKeep     checkVerdict = iota // the primary holds the same copy, or the views differ: wait
	checkLeftOver                     // a copy at least as new, settled, is elsewhere: drop this one
	checkHandoff                      // the primary lost it or did not answer: hand it on
)

var checkNames = [...]string{"keep", "left-over", "handoff"}

func (c checkVerdict) String() string { return checkNames[c] }

// check decides on this relay's copy it from the primary's answer a.
func (r rules) check(it *item, a answer) checkVerdict {
	switch {
	case errors.Is(a.err, errViewsDiffer):
		return checkKeep // the two see other members: wait until they agree
	case a.err == nil && a.it != nil && it.same(a.it):
		return checkKeep // the primary is only slow to move it
	case a.err == nil && a.it != nil && !it.newer(a.it) && a.age >= r.settle:
		return checkLeftOver
	case a.err != nil || a.it == nil || it.newer(a.it):
		return checkHandoff
	}
	return checkKeep // newer elsewhere, not yet settled: ask again later
}
