// Package circulate keeps clients' SCONEs in circulation among a group of
// relays, the second network-held mode of the SCONE patent (Fig. 8): no
// relay keeps a client's SCONEs; they move from relay to relay until they
// are needed or expire, and the relay that receives a request finds them by
// asking the others.
//
// A Store is a relay.Store; give it to a relay (relay.Config.Store). The
// relays form a group with memberlist (through internal/membership, the
// membership layer cluster nodes share), and each serves the others its
// Circulation service (circulatepb). The relays' own links are secured:
// the Circulation service runs over mutual TLS with a CA of the group
// (Config.PeerTLS), and gossip is encrypted with memberlist's keyring
// (Config.GossipKeys); a relay whose gossip or peer address is not on
// loopback refuses to start without both, unless Config.InsecurePeers.
//
// The decisions (when to hand a copy on and to whom, which answer of a
// query wins, when a copy may be served alone, what a holder does with a
// put, expiry) are pure rules in core.go, given the time rather than
// reading a clock; the scenarios under testdata/ replay them without
// sockets or goroutines.
//
// # Copies, hops and the primary
//
// Each client's SCONEs exist as Config.Copies copies (2 by default) on as
// many relays: the holders of the current hop, chosen by rendezvous hashing
// of (client, hop) over the live relays; the first is the primary. After
// Config.Dwell the primary hands the copies on: it puts them on every
// holder of the next hop, and only once all have acknowledged does it retire
// the copies of the old hop (its own last), so a hand-off in flight is never
// the only copy. When a holder leaves or fails, the first live holder hands
// the copies on at once, which recreates the lost copy: the count returns to
// Copies. Every holder drops its copy at the expiry of the client's last
// SCONE, read by its clock less Config.MaxClockSkew: the servers are the
// authority on expiry, and a relay whose clock runs ahead of theirs (by
// less than that) must not drop, or refuse to serve, a live copy.
//
// # Reads and writes
//
// A relay that committed its copy itself, as the primary, within
// Config.Lease (shorter than the time the group takes to declare a silent
// relay dead) serves a request from it; a copy another relay put there is
// never served alone (its sender may have given up on the put before it
// landed). Otherwise it asks every other live relay in parallel and takes
// the newest copy (the highest generation, then hop). If no relay holds one and all have answered, the
// client has no state; if some relay has not answered within
// Config.QueryTimeout, the request fails with CodeUnavailable, never served
// with an empty state by accident.
//
// The write of a reply goes to the primary the read found (a relay that
// handed the copies on lately passes it on). The primary applies it only if
// its copy still holds what the request carried (as hook.ApplyIfBase:
// else CodeConflict), puts the new generation on the other holders on top of
// the old one (compare-and-set), and keeps it once all have; if a holder
// refuses, the holders that took it undo it and the write fails with
// nothing changed (CodeConflict). If a holder, or the primary, does not
// answer, the write fails with CodeInDoubt: that relay may take it yet (the
// request may be held up in the network), so its outcome is unknown. Older copies found by a read (left behind by a
// failed hand-off, or on a relay that was paused) are retired.
package circulate
