package badgrpc

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/scone-project/scone/internal/badinput"
)

// callRaw makes a unary call over plaintext HTTP/2 by hand, with the
// case's payloads as raw header values of its key: what no gRPC client
// sends. It returns the call's status as an error, as a gRPC client would.
func callRaw(ctx context.Context, conn grpc.ClientConnInterface, method string, cs *badinput.Case, md metadata.MD, req, reply proto.Message) error {
	cc, ok := conn.(*grpc.ClientConn)
	if !ok {
		return fmt.Errorf("badgrpc: raw metadata needs a *grpc.ClientConn, not %T", conn)
	}
	msg, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	body := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+cc.Target()+method, bytes.NewReader(append(body, msg...)))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/grpc")
	hreq.Header.Set("Te", "trailers")
	for k, vs := range md {
		for _, v := range vs {
			hreq.Header.Add(k, v)
		}
	}
	for _, p := range cs.Payloads {
		hreq.Header.Add(cs.Key, string(p))
	}
	tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(hreq)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	h := resp.Trailer
	if h.Get("Grpc-Status") == "" {
		h = resp.Header // a trailers-only response
	}
	code, err := strconv.Atoi(h.Get("Grpc-Status"))
	if err != nil {
		return fmt.Errorf("badgrpc: HTTP %d without a grpc-status", resp.StatusCode)
	}
	if codes.Code(code) != codes.OK {
		return status.Error(codes.Code(code), h.Get("Grpc-Message"))
	}
	if len(b) < 5 {
		return fmt.Errorf("badgrpc: a reply of %d bytes", len(b))
	}
	return proto.Unmarshal(b[5:], reply)
}
