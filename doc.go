// Package scone makes a server stateless by sealing its per-client state
// into a SCONE (state-caching object) that travels with the reply. Whoever
// holds it, the client, relays in the network, or the peers of a cluster,
// sends it back with the next request, and any replica of the server with
// the key continues where the last one stopped.
//
// The pieces, in the order a request meets them:
//
//   - A Holder (Dict is the in-memory one) keeps the SCONEs a client was
//     given, by service ID and scope, and attaches the ones whose scope
//     matches the next request's target (ScopeMatches).
//   - A Sealer, on the server, opens the SCONE of a request into a State
//     (Restore), which the hook puts in the request's context (NewContext).
//   - The handler reads and changes its state through FromContext, or
//     through a Typed view that converts its own Go or protobuf type.
//   - After the handler, the Sealer seals what changed (Commit) with the
//     primary key of its KeyRing and a fresh nonce, and the hook attaches it
//     to the reply; the holder keeps the newest version.
//
// The hooks for transports live in the sconegrpc and sconehttp packages;
// relay and cluster keep SCONEs in the network and in a cluster.
//
// # The envelope
//
// A sealed SCONE is a versioned binary envelope (see docs/wire.md):
//
//	+--------+--------+---------+---------+-----+---------+-----+-------+------------------+-----+
//	| format | key ID | version | expires | len | service | len | scope | nonce (24 bytes) | ... |
//	|   1    |   4    |    8    |    8    |  1  |   1-255 |  1  | 0-255 |                  |     |
//	+--------+--------+---------+---------+-----+---------+-----+-------+------------------+-----+
//	 \______________ cleartext header: authenticated as associated data _______/
//	   ... sealed body (session, issued at, epoch, endpoint, object, status, client, data) + tag (16)
//
// The cleartext header holds only what a holder needs to route, order and
// evict; the format byte fixes the AEAD, XAES-256-GCM, so a holder can never
// choose an algorithm. Everything else is sealed.
//
// # Errors
//
// Every error this package returns is an *Error with a Code from a closed,
// append-only set; CodeOf extracts it. A SCONE that will not open is always
// an error (tampered, expired, unknown key, wrong service, too large, rolled
// back, revoked, wrong client), never a silent reset to empty state.
package scone
