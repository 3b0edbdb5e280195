// Package relay keeps SCONEs in the network: a gRPC relay that stands
// between gRPC clients and servers running the sconegrpc server hook (the
// patent's Fig. 8). For every reply it takes the SCONEs off and keeps them,
// keyed by the client's identity, service and scope; on the client's next
// request, through this relay or any relay sharing the store, it attaches
// them again. The client needs no SCONE code at all: an unmodified gRPC
// client gets stateful sessions from stateless servers.
//
// A Store holds the SCONEs: MemoryStore, in the relay's memory (bounded; a
// relay that dies loses what it held), or JetStreamStore, a NATS JetStream
// key-value bucket shared by relays, so any relay can die without losing
// state. The relay holds no key, and so can neither read nor forge a SCONE:
// it reads only the SCONEs' cleartext headers (expiry, version, service,
// scope), checks their layout and size, and trusts its upstreams, which
// authenticate every SCONE they are given back.
// Expiry is read by an injectable clock (Config.Now, and each store's Now),
// with a tolerance for its skew (Config.MaxClockSkew, a minute by default):
// the servers are the authority on expiry, so a relay keeps and attaches a
// SCONE until its expiry plus that tolerance, and a relay whose clock runs
// ahead of the servers' by less does not lose a client's state.
//
// A call an upstream loses before answering (a refused or reset connection,
// a server gone mid-call) is re-sent with the same SCONEs to another
// upstream, within Config.RetryAttempts, for the methods the proto declares
// idempotent or free of side effects and those Config.RetryMethods names.
// That is safe for the state kept in SCONEs, whatever the method does with
// it: the lost attempt's new SCONEs reached no holder. Effects outside
// SCONEs are the application's.
//
// HTTPServer (NewHTTP) is the same relay for HTTP: a reverse proxy in front
// of servers running sconehttp.Middleware, attaching the SCONEs in the Scone
// header and taking them off the responses, with the same Config, identity
// rules and stores.
//
// See docs/modes.md for what the mode promises, and cmd/scone's "relay"
// command for the daemon.
package relay
