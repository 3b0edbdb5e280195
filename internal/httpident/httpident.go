// Package httpident lets an HTTP request be named by a sconegrpc.Identity,
// so the holders that name clients (relay, cluster) follow one set of
// identity rules whichever transport a client uses: Context presents the
// request as a gRPC server would present a call, its headers as incoming
// metadata (keys lower-cased) and its TLS connection as the peer.
package httpident

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// Context returns r's context carrying r as a gRPC call's: its headers as
// incoming metadata, and a peer with its remote address and, over TLS, its
// connection state (so sconegrpc.CertIdentity reads the verified client
// certificate of the request as it reads a call's).
func Context(r *http.Request) context.Context {
	md := make(metadata.MD, len(r.Header))
	for k, v := range r.Header {
		k = strings.ToLower(k)
		md[k] = append(md[k], v...)
	}
	ctx := metadata.NewIncomingContext(r.Context(), md)
	p := &peer.Peer{Addr: remoteAddr(r.RemoteAddr)}
	if r.TLS != nil {
		p.AuthInfo = credentials.TLSInfo{State: *r.TLS, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	}
	return peer.NewContext(ctx, p)
}

// remoteAddr parses an http.Request's RemoteAddr ("ip:port").
func remoteAddr(s string) net.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return net.TCPAddrFromAddrPort(ap)
	}
	return stringAddr(s)
}

type stringAddr string

func (a stringAddr) Network() string { return "tcp" }
func (a stringAddr) String() string  { return string(a) }
