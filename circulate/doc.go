// Package circulate keeps clients' SCONEs in circulation among a group of
// relays, the second network-held mode of the SCONE patent (Fig. 8): no
// relay keeps a client's SCONEs for long, and none stores them anywhere
// but in memory; they move from relay to relay until they are needed or
// expire, and the relay that receives a request finds them by asking the
// others.
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
// query wins, when a copy may be served alone, where a write goes, what a
// holder does with a put, expiry) are pure rules in core.go, given the
// time rather than reading a clock; the scenarios under testdata/ replay
// them without sockets or goroutines.
//
// # Where the copies are
//
// At any moment, each client's SCONEs exist as Config.Copies copies (2 by
// default), in the memory of as many relays: the holders of the current
// hop, listed in each copy; the first is the primary. A hand-off moves them
// to the holders of the next hop: the live relays that hold no copy first,
// then the current holders, each in the order of rendezvous hashing of
// (client, hop), up to Copies. So with more live relays than copies, every
// hand-off moves the primary's copy to a relay that held none, and with
// twice as many or more, every copy moves. The primary hands the copies on
// after Config.Dwell, and at once after each write. It puts them on every
// holder of the next hop, and only once all have acknowledged does it
// retire the copies of the old hop (its own last), so a hand-off in flight
// is never the only copy: during one, the client's copies are on the old
// holders and on the new holders that took them already. When a holder
// leaves or fails, the first live holder hands the copies on at once, which
// recreates the lost copy: the count returns to Copies. Every holder drops
// its copy at the expiry of the client's last SCONE, read by its clock less
// Config.MaxClockSkew: the servers are the authority on expiry, and a relay
// whose clock runs ahead of theirs (by less than that) must not drop, or
// refuse to serve, a live copy.
//
// With no more live relays than Copies, every live relay holds every
// client's copies, and a hand-off can only change which of them is the
// primary: the group replicates, statically. It still serves (with fewer
// relays than Copies it serves nothing), but Store.Circulating says so, the
// relay logs a warning when it starts that way and whenever its group
// falls to that size, and scone relay's /healthz answers ok with a
// warning line.
//
// # Reads and writes
//
// A relay that sees fewer live relays than Copies serves no request
// (CodeUnavailable): every copy may be on relays it cannot see. Otherwise,
// a relay that committed its copy itself (a write, or a hand-off it sent,
// that every holder took) within Config.Lease (shorter than the time the
// group takes to declare a silent relay dead) serves a request from it; a
// copy another relay put there is never served alone (its sender may have
// given up on the put before it landed). Otherwise it asks every other
// live relay in parallel and takes the newest copy (the highest
// generation, then hop). If no relay holds one and all have answered, the
// client has no state; if some relay has not answered within
// Config.QueryTimeout, the request fails with CodeUnavailable, never
// served with an empty state by accident.
//
// The write of a reply goes to the primary the read found (a relay that
// handed the copies on lately passes it on). The primary applies it only
// if its copy still holds what the request carried (as hook.ApplyIfBase:
// else CodeConflict), puts the new generation on the other holders on top
// of the old one (compare-and-set), and keeps it once all have; if a
// holder refuses (it holds a newer generation: another write came first),
// the holders that took it undo it and the write fails with nothing
// changed (CodeConflict). A holder that took nothing otherwise (it holds
// no copy of that generation and hop: it restarted, or the hand-off that
// made the primary has not reached it yet; or its copy was busy) fails
// the write with CodeUnavailable, nothing changed, once the others have
// undone it. If a holder, or the primary, does
// not answer, the write fails with CodeInDoubt: that relay may take it yet
// (the request may be held up in the network), so its outcome is unknown.
// A write is never sent to a relay that is not live in the sender's view:
// if the primary the read found, or a holder, has left the group, the
// write fails with CodeUnavailable, nothing changed, and the first holder
// left hands the copies on at once, so the client's retry finds the new
// primary. Older copies found by a read (left behind by a failed hand-off,
// or on a relay that was paused) are retired.
//
// A relay that leaves (Store.Leave) first hands every copy it holds to the
// others, as a member of the group they still see, then leaves.
package circulate
