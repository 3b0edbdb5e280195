// Package sconegrpc is the channel hook of SCONE for gRPC: interceptors that
// carry SCONEs between gRPC clients and servers, so a server keeps no
// per-client state and any replica serves any call.
//
// On the server, ServerOptions installs the hook; handlers read and change
// their state through scone.FromContext or a scone.Typed view. On the
// client, DialOptions installs it; the client keeps the SCONEs it is given in
// a scone.Holder and attaches them to its next calls. Nothing else changes
// in the handler or the caller.
//
//	srv := grpc.NewServer(sconegrpc.ServerOptions(sealer)...)
//	conn, err := grpc.NewClient(addr, append(sconegrpc.DialOptions(), creds)...)
//
// # Carriers
//
// Unary calls carry SCONEs in the message body: a frame written as the first
// field of the request or reply (field number 536870911, which schemas do
// not use), so a peer without the hook parses it as an unknown field and
// ignores it. gRPC metadata would cost far more: every byte is
// base64-encoded and Huffman-coded by HPACK (see docs/modes.md for the
// figures). Streams, failed unary calls, and clients configured with
// WithMetadataCarrier use the "scone-bin" metadata key instead: headers on
// the way in, trailers on the way out.
//
// # Multi-tier
//
// A front end that calls back ends with the handler's context (and a
// connection with the client hook, WithoutHolder) forwards the SCONEs its
// request brought for them and the scope its client files them under; what
// the back ends seal comes back up in the front end's reply, to be kept by the
// client beside the front end's own SCONE. This works through any number of
// tiers and any number of back ends per tier.
//
// # Errors
//
// A SCONE that does not open fails the call with the status Status maps its
// scone.Code to, with a google.rpc.ErrorInfo detail (domain ErrorDomain)
// naming the code. On a client with the hook, scone.CodeOf reads the code
// from the call's error (status.Code still gives the gRPC code); clients
// without it read the detail. The holder keeps what it had.
package sconegrpc
