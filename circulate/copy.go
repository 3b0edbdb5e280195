package circulate

import (
	"slices"
	"strconv"
	"time"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/circulate/circulatepb"
	"github.com/scone-project/scone/cluster"
	"github.com/scone-project/scone/internal/hook"
)

// item is a relay's copy of one client's SCONEs. Items are never modified:
// a change makes a new one.
type item struct {
	key     string
	gen     uint64   // grows by one at each write
	hop     uint64   // grows by one at each hand-off
	holders []string // the relays holding this hop's copies, the primary first
	scones  [][]byte
	expires time.Time // the latest expiry of its SCONEs
	since   time.Time // when this relay took it
	// committed is when this relay, as the primary, finished the write or
	// hand-off that made it (every holder took it), by the monotonic
	// clock; zero for a copy another relay put here, which that relay may
	// have given up on (a put held up in the network lands late).
	committed time.Time
	// written is set on the primary's copy by a write: the copies move on
	// at the next pass, without waiting for the dwell. A hand-off makes a
	// copy without it.
	written bool
	prev    *item // before the last UPDATE, for its UNDO
}

// newer reports whether a is a later copy than b: a later write, or the same
// write handed further. A nil b is older than any copy.
func (a *item) newer(b *item) bool {
	if b == nil {
		return true
	}
	if a.gen != b.gen {
		return a.gen > b.gen
	}
	return a.hop > b.hop
}

// same reports whether a and b are copies of one write at one hop.
func (a *item) same(b *item) bool {
	return b != nil && a.gen == b.gen && a.hop == b.hop
}

// identical reports whether a and b are one copy: one write at one hop,
// on the same holders. Two hand-offs of one copy decided on different
// views (its primary's, and a leaving relay's, which counts itself out)
// make copies of one generation and hop on other holders: a put or an
// UNDO of one must not pass for the other.
func (a *item) identical(b *item) bool {
	return a.same(b) && slices.Equal(a.holders, b.holders)
}

// withoutPrev returns a with no earlier copy kept: only one step is ever
// undone, and a chain would keep every generation a relay ever held.
func (a *item) withoutPrev() *item {
	if a == nil || a.prev == nil {
		return a
	}
	c := *a
	c.prev = nil
	return &c
}

// primary returns the relay that serialises the item's writes and moves it.
func (a *item) primary() string { return a.holders[0] }

// placement returns the relays that hold the copies of key's hop-th hop:
// rendezvous hashing of (key, hop) over the live members, so each hop goes
// to a different set, and every relay computes the same one.
func placement(key string, hop uint64, members []string, copies int) []string {
	return cluster.Owners(key+"/"+strconv.FormatUint(hop, 10), members, copies)
}

// nextHolders returns the holders of key's hop-th hop, handed on from the
// relays in current: the live members that hold no copy come first, then
// the current holders, each in the order of placement for (key, hop). So
// every hand-off moves as many copies as the group allows to relays that
// held none, and the new primary is one of them: with more live relays
// than copies, at least one copy, the primary's, changes relay at every
// hop; with twice as many, every copy does.
func nextHolders(key string, hop uint64, members []string, copies int, current []string) []string {
	ranked := placement(key, hop, members, len(members))
	fresh := slices.DeleteFunc(slices.Clone(ranked), func(m string) bool { return slices.Contains(current, m) })
	kept := slices.DeleteFunc(ranked, func(m string) bool { return !slices.Contains(current, m) })
	out := append(fresh, kept...)
	return out[:min(copies, len(out))]
}

// expiry returns the latest expiry of tokens, which must be well formed.
func expiry(tokens [][]byte) time.Time {
	var t time.Time
	for _, tok := range tokens {
		if h, err := hook.Peek(tok); err == nil && h.Expires.After(t) {
			t = h.Expires
		}
	}
	return t
}

// short returns the start of a key, for logs.
func short(key string) string { return key[:min(len(key), 8)] }

// toProto returns the item as sent to other relays.
func (a *item) toProto() *pb.Copy {
	return &pb.Copy{Key: a.key, Gen: a.gen, Hop: a.hop, Holders: a.holders, Scones: a.scones}
}

// fromProto checks a copy from another relay and returns it as an item.
func fromProto(c *pb.Copy, maxSCONEs int, now time.Time) (*item, error) {
	switch {
	case c == nil || c.Key == "":
		return nil, scone.NewError(scone.CodeMalformed, "circulate: a copy without a key")
	case len(c.Holders) == 0:
		return nil, scone.NewError(scone.CodeMalformed, "circulate: a copy without holders")
	case len(c.Scones) == 0 || len(c.Scones) > maxSCONEs:
		return nil, scone.NewError(scone.CodeMalformed, "circulate: a copy of "+strconv.Itoa(len(c.Scones))+" SCONEs")
	}
	for _, tok := range c.Scones {
		if _, err := hook.Peek(tok); err != nil {
			return nil, err
		}
	}
	return &item{
		key: c.Key, gen: c.Gen, hop: c.Hop,
		holders: slices.Clone(c.Holders), scones: c.Scones,
		expires: expiry(c.Scones), since: now,
	}, nil
}
