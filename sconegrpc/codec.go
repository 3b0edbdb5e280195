package sconegrpc

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto" // registers the base codec
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"

	"github.com/scone-project/scone/internal/grpcframe"
)

// The body carrier. A unary message goes out as
//
//	[frame field (tag, length, frame)] [the message's own fields]
//
// which is still one valid protobuf message of the same type: a peer without
// the hook parses the frame as an unknown field and ignores it. The codec is
// gRPC's protobuf codec plus two wrapper types: bodyOut writes a frame before
// a message, bodyIn takes it off before decoding one. Its name is "proto", so
// the content-type on the wire does not change.
//
// A server's request is a plain message: the codec decodes it without its
// frame field, and gives the message that field alone as its unknown fields,
// in a pooled buffer the server hook takes back (requestFrame). Other
// messages' unknown fields come after it, as protobuf would keep them.

// bodyOut is a message to send with a frame before it. Marshal releases
// the frame once it is written.
type bodyOut struct {
	msg   any
	frame outFrame
}

// outFrame is a frame to send, whose new SCONE may live in a pooled buffer.
type outFrame struct {
	grpcframe.Frame
	pooled *[]byte // a pooled buffer one of the SCONEs lives in, if any
}

// release returns the frame's pooled buffer, once the frame is encoded.
func (f *outFrame) release() {
	if f.pooled != nil {
		wirePool.Put(f.pooled)
		f.pooled = nil
	}
}

// bodyIn is a message to receive, and the frame that came before it.
type bodyIn struct {
	msg   any
	frame []byte
	found bool
}

// minMessageBuf is the least capacity of a message buffer: over gRPC's
// pooling threshold (mem.IsBelowBufferPoolingThreshold), so that it comes
// back to the pool.
const minMessageBuf = 1<<10 + 1

type codec struct{ base encoding.CodecV2 }

var theCodec = codec{base: encoding.GetCodecV2("proto")}

// Codec returns the gRPC codec that carries SCONEs in unary message bodies.
// Servers install it with grpc.ForceServerCodecV2 (ServerOptions does) so
// replies can carry SCONEs in their body; clients need not install it, the
// client interceptors select it per call. For every other message it is
// gRPC's protobuf codec.
func Codec() encoding.CodecV2 { return theCodec }

// Name returns "proto": the codec is wire-compatible with protobuf.
func (codec) Name() string { return "proto" }

// Marshal implements encoding.CodecV2.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	out, ok := v.(*bodyOut)
	if !ok {
		return c.base.Marshal(v)
	}
	m := messageV2Of(out.msg)
	if m == nil {
		return nil, fmt.Errorf("sconegrpc: failed to marshal, message is %T, want proto.Message", out.msg)
	}
	size := proto.Size(m)
	total := grpcframe.BodyFieldSize(&out.frame.Frame) + size
	// Always pooled: with the frame, messages are rarely small. gRPC gives
	// the buffer back once it is written, if it is over its pooling
	// threshold (mem.NewBuffer), which the buffer's capacity always is.
	pool := wirePool
	buf := pool.Get(max(total, minMessageBuf))
	b := grpcframe.AppendBodyField((*buf)[:0], &out.frame.Frame)
	out.frame.release()
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, m)
	if err != nil {
		pool.Put(buf)
		return nil, err
	}
	*buf = b
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// Unmarshal implements encoding.CodecV2.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	in, ok := v.(*bodyIn)
	if !ok {
		return c.unmarshalRequest(data, v)
	}
	m := messageV2Of(in.msg)
	if m == nil {
		return fmt.Errorf("sconegrpc: failed to unmarshal, message is %T, want proto.Message", in.msg)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	if fr, rest, ok := grpcframe.SplitBody(b); ok {
		// The holder keeps the reply's SCONEs: they need storage of their own.
		in.frame = append(in.frame[:0], fr...)
		in.found = true
		b = rest
	}
	return proto.Unmarshal(b, m)
}

// unmarshalRequest decodes a plain message, as gRPC's codec does. When it
// starts with a frame field (a request from a client hook), the message is
// decoded without it, and its unknown fields are the field, copied into a
// pooled buffer, then the message's own: the protobuf decoder need not skip
// it, nor allocate the unknown fields that hold it.
func (c codec) unmarshalRequest(data mem.BufferSlice, v any) error {
	m := messageV2Of(v)
	if m == nil {
		return c.base.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	b := buf.ReadOnlyData()
	_, rest, ok := grpcframe.SplitBody(b)
	if !ok {
		return proto.Unmarshal(b, m)
	}
	if err := proto.Unmarshal(rest, m); err != nil {
		return err
	}
	r := m.ProtoReflect()
	u := r.GetUnknown()
	field := b[:len(b)-len(rest)]
	p := wirePool.Get(len(field) + len(u))
	r.SetUnknown(append(append((*p)[:0], field...), u...))
	return nil
}

func messageV2Of(v any) proto.Message {
	switch v := v.(type) {
	case protoadapt.MessageV2:
		return v
	case protoadapt.MessageV1:
		return protoadapt.MessageV2Of(v)
	}
	return nil
}
