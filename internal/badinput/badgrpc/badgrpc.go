// Package badgrpc sends the cases of the bad-input corpus (package
// badinput) over gRPC, as a client without the hook would, and checks the
// answers.
package badgrpc

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/scone-project/scone/internal/badinput"
	"github.com/scone-project/scone/internal/grpcframe"
	"github.com/scone-project/scone/sconegrpc"
)

// Call makes a unary call of method on conn with req, md's pairs, and the
// case's payloads on its carrier in the request's metadata. For the
// RawMetadata carrier conn must be a *grpc.ClientConn made for one address,
// which the call reaches over plaintext HTTP/2 by hand.
func Call(ctx context.Context, conn grpc.ClientConnInterface, method string, cs *badinput.Case, md metadata.MD, req, reply proto.Message) error {
	md = md.Copy()
	switch cs.Carrier {
	case badinput.Envelope:
		md.Append(grpcframe.MetadataKey, string(grpcframe.AppendFrame(nil, &grpcframe.Frame{SCONEs: cs.Payloads})))
	case badinput.Frame:
		for _, p := range cs.Payloads {
			md.Append(grpcframe.MetadataKey, string(p))
		}
	case badinput.Metadata:
		for _, p := range cs.Payloads {
			md.Append(cs.Key, string(p))
		}
	case badinput.RawMetadata:
		return callRaw(ctx, conn, method, cs, md, req, reply)
	default:
		return fmt.Errorf("badgrpc: carrier %q is not for gRPC", cs.Carrier)
	}
	return conn.Invoke(metadata.NewOutgoingContext(ctx, md), method, req, reply)
}

// CallBody is Call for an Envelope case, with its SCONEs in the request's
// message body (the body carrier: the frame field first), not metadata.
func CallBody(ctx context.Context, conn grpc.ClientConnInterface, method string, cs *badinput.Case, md metadata.MD, req, reply proto.Message) error {
	if cs.Carrier != badinput.Envelope {
		return fmt.Errorf("badgrpc: the body carries envelopes, not %q", cs.Carrier)
	}
	b := grpcframe.AppendBodyField(nil, &grpcframe.Frame{SCONEs: cs.Payloads})
	b, err := proto.MarshalOptions{}.MarshalAppend(b, req)
	if err != nil {
		return err
	}
	return conn.Invoke(metadata.NewOutgoingContext(ctx, md), method, rawRequest(b), reply, grpc.ForceCodecV2(rawCodec{}))
}

// Check returns an error unless err is the answer want describes: success,
// or a status with want's code whose ErrorInfo names want's scone code.
// It also checks that the manifest's status is the one the code maps to.
func Check(err error, want *badinput.Expect) error {
	got := status.Code(err)
	switch {
	case want.OK():
		if err != nil {
			return fmt.Errorf("want success, got %v", err)
		}
		return nil
	case got.String() != want.Status:
		return fmt.Errorf("status %v (%v), want %s", got, err, want.Status)
	case want.Code == "":
		return nil // refused by gRPC itself, before any hook
	}
	c := grpcframe.StatusCode(err)
	if c.String() != want.Code {
		return fmt.Errorf("scone code %v (%v), want %s", c, err, want.Code)
	}
	if m := sconegrpc.GRPCCode(c); m.String() != want.Status {
		return fmt.Errorf("the manifest says %s for %s, which maps to %v", want.Status, want.Code, m)
	}
	if got == codes.Unknown || got == codes.OK {
		return fmt.Errorf("status %v", got)
	}
	return nil
}

// rawRequest is a request message already encoded.
type rawRequest []byte

// rawCodec sends a rawRequest as it is and decodes replies as protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(rawRequest)
	if !ok {
		return nil, fmt.Errorf("badgrpc: cannot send %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("badgrpc: cannot decode into %T", v)
	}
	return proto.Unmarshal(data.Materialize(), m)
}

func (rawCodec) Name() string { return "proto" }
