// Package cluster keeps SCONEs in a cluster of servers (the patent's
// Fig. 9): the computers of the cluster, not the client, hold the
// state-caching objects, and before a request completes its SCONEs are on k
// of them, so the survivors can restore the state of any that fails.
//
// A Node joins the cluster through hashicorp/memberlist (gossip membership
// and failure detection) and serves the Peer protocol (clusterpb) to the
// other nodes. Its server interceptor (UnaryServerInterceptor) serves a
// request on any node: it fetches the client's record from the record's
// owners (the newest version wins), restores the state through
// hook.Exchange, runs the handler unchanged, writes the new record to the k
// owners, and replies once they all acknowledged; Middleware does the same
// for a net/http handler. The client needs no SCONE
// code: it is named by what it proves (Config.Identity; by default the URI
// SAN of its verified TLS client certificate), as with a relay; a header
// naming it (Config.IdentityHeader) is an explicit opt-in, safe only behind
// an authenticating proxy.
//
// The nodes' own links are secured apart from the clients': the Peer
// service runs over mutual TLS with a CA of the cluster (Config.PeerTLS),
// and gossip is encrypted with memberlist's keyring (Config.GossipKeys).
// A node whose gossip or peer address is not on loopback refuses to start
// without both, unless Config.InsecurePeers. docs/security.md has the
// rotation of gossip keys.
//
// Placement (Owners), the write rule (Accept) and repair planning
// (PlanRepair) are plain functions, and so are the node's other decisions
// (how a write and its undos end, the lease after an owner left, when a
// node serves its own copy): the node runs the I/O around them, and
// scenario files in testdata/core drive them step by step, with the
// network and the clock in the script's hands. A write goes to every
// owner at once, and each accepts a record only on top of the version it
// was made from (compare-and-set), so two nodes serving one client at once,
// or a paused node waking up, cannot lose an update: a loser fails with
// Aborted, and its write is taken back wherever it landed. When a node dies or joins, each node copies the records it holds
// to their new owners until k copies exist again, and drops a copy it no
// longer owns only once every owner has it. See docs/modes.md.
package cluster
