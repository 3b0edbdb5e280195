// Package scone makes a server stateless by sealing its per-client state
// into a SCONE (state-caching object) that travels with the reply. Whoever
// holds it, the client, relays in the network, or the peers of a cluster,
// sends it back with the next request, and any replica of the server with
// the key continues where the last one stopped.
//
// # Handlers
//
// A handler reads and changes the state of its request through FromContext,
// which gives the request's State, or through a Typed view that converts
// the handler's own Go or protobuf type (JSONCodec, ProtoCodec):
//
//	var cart = scone.NewTyped(scone.ProtoCodec[*pb.Cart]())
//
//	c, ok, err := cart.Load(ctx) // ok is false on a session's first call
//	if !ok {
//		c = &pb.Cart{}
//	}
//	c.Items = append(c.Items, item)
//	err = cart.Store(ctx, c)
//
// State.Drop ends the session; a failed handler's changes are not kept
// unless it calls State.ApplyOnError.
//
// # Servers
//
// A server needs a KeyRing (from a key file: ReadKeyFile) and a Sealer
// (NewSealer, configured by options such as WithTTL). The transport hooks,
// sconegrpc and sconehttp, take the Sealer and do the rest for every
// request. Without a hook, Sealer.Restore opens the SCONE of a request into
// a State, NewContext puts it in the handler's context, and Sealer.Commit
// seals what changed for the reply, with the KeyRing's primary key and a
// fresh nonce.
//
// # Holders
//
// A Holder keeps the SCONEs a client was given, by service ID and scope, and
// attaches the ones whose scope matches the next request's target
// (ScopeMatches). Dict is the in-memory one, and the client hooks' default.
// A holder reads only a SCONE's cleartext Header (ParseHeader); transports
// that carry text use EncodeText and DecodeText.
//
// # Operators
//
// Keys rotate while serving: add a key to every server's ring, promote it,
// retire the old one after the longest SCONE lifetime (KeyRing, key files
// reloaded with ReloadKeyFile, and the scone keys command). A MarkStore
// (WithMarkStore: NewMemoryMarkStore, or package marks on NATS JetStream)
// makes each version of a session's SCONE spendable once across replicas,
// and lets Sealer.Revoke end a session, a client's sessions or a service's
// SCONEs; WithMaxSessionAge ends sessions however often re-sealed. The relay
// and cluster packages keep SCONEs in the network and in a cluster.
//
// # Errors
//
// Every error this package returns is an *Error with a Code from a closed,
// append-only set; CodeOf extracts it, also from the error of a call made
// through a client hook. A SCONE that will not open is always an error
// (tampered, expired, unknown key, wrong service, too large, rolled back,
// revoked, wrong client), never a silent reset to empty state.
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
package scone
