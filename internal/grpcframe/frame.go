// Package grpcframe is SCONE's wire format on gRPC: the frame of SCONEs a
// call carries beside its messages (in the message body or in metadata),
// and the error detail a refused call's status carries. sconegrpc speaks
// it; relays and tests read and write it directly.
package grpcframe

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
)

// MetadataKey is the metadata key of the metadata carrier: its value is a
// frame (the same protobuf as in message bodies). Streams carry SCONEs in
// it both ways (request headers, reply trailers); unary calls use it for
// replies that fail, and when the server lacks the body codec.
const MetadataKey = "scone-bin"

// A Frame is what the hook carries beside a message: the SCONEs attached to a
// request or returned with a reply, the sessions a reply ends, and, on a
// request from a front end to its back end, the scope the client files the
// back end's SCONEs under. It is a protobuf message, written by hand with
// protowire:
//
//	message Frame {
//	  repeated bytes scones  = 1; // sealed SCONE envelopes
//	  repeated Drop  dropped = 2; // sessions that ended
//	  string         scope   = 3; // request only: where replies are filed
//	}
//	message Drop {
//	  string service = 1;
//	  string scope   = 2;
//	}
//
// In a unary message body the frame is field frameField of the message, the
// first field written; in metadata it is the value of MetadataKey.
type Frame struct {
	// SCONEs are sealed SCONE envelopes.
	SCONEs [][]byte
	// Dropped names the sessions that ended (replies only).
	Dropped []hook.HolderKey
	// Scope is, on a request from a front end to a back end, where the
	// client files the back end's SCONEs.
	Scope string
}

// frameField is the field number the frame takes inside a request or reply
// message: the largest valid field number, which schemas do not use. A peer
// without the hook keeps it as an unknown field and ignores it.
const frameField protowire.Number = protowire.MaxValidNumber

// Limits of a frame, checked before anything else is decoded.
const (
	// maxFrameSCONEs bounds the SCONEs of one frame.
	maxFrameSCONEs = 64
	// maxFrameSize bounds the encoded frame.
	maxFrameSize = 64 * scone.MaxEnvelopeSize / 16
	// maxServiceLen and maxScopeLen are the envelope's limits (docs/wire.md).
	maxServiceLen = 255
	maxScopeLen   = 255
)

const (
	fieldSCONEs  protowire.Number = 1
	fieldDropped protowire.Number = 2
	fieldScope   protowire.Number = 3

	fieldDropService protowire.Number = 1
	fieldDropScope   protowire.Number = 2
)

// Empty reports whether the frame carries nothing.
func (f *Frame) Empty() bool {
	return len(f.SCONEs) == 0 && len(f.Dropped) == 0 && f.Scope == ""
}

// AppendFrame appends the encoding of f to b.
func AppendFrame(b []byte, f *Frame) []byte {
	for _, s := range f.SCONEs {
		b = protowire.AppendTag(b, fieldSCONEs, protowire.BytesType)
		b = protowire.AppendBytes(b, s)
	}
	for _, d := range f.Dropped {
		b = protowire.AppendTag(b, fieldDropped, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(dropSize(d)))
		b = protowire.AppendTag(b, fieldDropService, protowire.BytesType)
		b = protowire.AppendString(b, d.Service)
		b = protowire.AppendTag(b, fieldDropScope, protowire.BytesType)
		b = protowire.AppendString(b, d.Scope)
	}
	if f.Scope != "" {
		b = protowire.AppendTag(b, fieldScope, protowire.BytesType)
		b = protowire.AppendString(b, f.Scope)
	}
	return b
}

// Size returns the length of f's encoding.
func Size(f *Frame) int {
	n := 0
	for _, s := range f.SCONEs {
		n += protowire.SizeTag(fieldSCONEs) + protowire.SizeBytes(len(s))
	}
	for _, d := range f.Dropped {
		n += protowire.SizeTag(fieldDropped) + protowire.SizeBytes(dropSize(d))
	}
	if f.Scope != "" {
		n += protowire.SizeTag(fieldScope) + protowire.SizeBytes(len(f.Scope))
	}
	return n
}

// AppendBodyField appends f as the frame field of a message: write the
// message's own encoding after it, and the result is the body carrier's
// message.
func AppendBodyField(dst []byte, f *Frame) []byte {
	dst = protowire.AppendTag(dst, frameField, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(Size(f)))
	return AppendFrame(dst, f)
}

// BodyFieldSize returns the length AppendBodyField appends.
func BodyFieldSize(f *Frame) int {
	return protowire.SizeTag(frameField) + protowire.SizeBytes(Size(f))
}

// Encode returns f's encoding in a buffer of its own.
func Encode(f *Frame) []byte { return AppendFrame(make([]byte, 0, Size(f)), f) }

func dropSize(d hook.HolderKey) int {
	return protowire.SizeTag(fieldDropService) + protowire.SizeBytes(len(d.Service)) +
		protowire.SizeTag(fieldDropScope) + protowire.SizeBytes(len(d.Scope))
}

// ParseFrame decodes a frame. The SCONEs it returns alias b. Unknown fields
// are skipped, so later versions may add fields; a malformed frame, too many
// SCONEs or an oversized one fail with the scone code for it.
func ParseFrame(b []byte) (Frame, error) {
	var f Frame
	err := f.Merge(b)
	return f, err
}

// Merge decodes a frame as ParseFrame does and adds it to f: its SCONEs and
// dropped sessions are appended to f's (whose storage a caller may provide),
// and its scope is f's if f has none. On error f is partly changed.
func (f *Frame) Merge(b []byte) error {
	if len(b) > maxFrameSize {
		return scone.NewError(scone.CodeTooLarge, "SCONE frame over the size limit")
	}
	var nSCONEs, nDropped int
	var scope []byte // the last of the frame's, as protobuf reads a repeated scalar
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformedFrame
		}
		b = b[n:]
		if typ != protowire.BytesType || num < fieldSCONEs || num > fieldScope {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return malformedFrame
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return malformedFrame
		}
		b = b[n:]
		switch num {
		case fieldSCONEs:
			if nSCONEs == maxFrameSCONEs {
				return scone.NewError(scone.CodeTooLarge, "too many SCONEs in one frame")
			}
			nSCONEs++
			f.SCONEs = append(f.SCONEs, v[:len(v):len(v)]) // no append runs into the next
		case fieldDropped:
			d, err := parseDrop(v)
			if err != nil {
				return err
			}
			if nDropped == maxFrameSCONEs {
				return scone.NewError(scone.CodeTooLarge, "too many dropped sessions in one frame")
			}
			nDropped++
			f.Dropped = append(f.Dropped, d)
		case fieldScope:
			if len(v) > maxScopeLen {
				return scone.NewError(scone.CodeMalformed, "scope longer than 255 bytes")
			}
			scope = v
		}
	}
	if f.Scope == "" && len(scope) > 0 {
		f.Scope = string(scope)
	}
	return nil
}

func parseDrop(b []byte) (hook.HolderKey, error) {
	var d hook.HolderKey
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return d, malformedFrame
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return d, malformedFrame
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return d, malformedFrame
		}
		b = b[n:]
		switch num {
		case fieldDropService:
			d.Service = string(v)
		case fieldDropScope:
			d.Scope = string(v)
		}
	}
	if d.Service == "" || len(d.Service) > maxServiceLen || len(d.Scope) > maxScopeLen {
		return d, scone.NewError(scone.CodeMalformed, "dropped session with a bad service or scope")
	}
	return d, nil
}

var malformedFrame = scone.NewError(scone.CodeMalformed, "SCONE frame is not valid protobuf")

// SplitBody finds the frame field at the start of a message's encoding,
// where the body carrier writes it. It returns the frame's bytes (aliasing
// msg), msg without the field, and whether it was there. Relays use it to
// take SCONEs off a reply.
func SplitBody(b []byte) (frame, rest []byte, ok bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != frameField || typ != protowire.BytesType {
		return nil, b, false
	}
	v, m := protowire.ConsumeBytes(b[n:])
	if m < 0 {
		return nil, b, false
	}
	return v, b[n+m:], true
}

// ExtractUnknown removes the frame field from a message's unknown fields,
// wherever it sits among them, and returns it.
func ExtractUnknown(u []byte) (fr, rest []byte, ok bool) {
	for off := 0; off < len(u); {
		num, typ, n := protowire.ConsumeTag(u[off:])
		if n < 0 {
			return nil, u, false
		}
		m := protowire.ConsumeFieldValue(num, typ, u[off+n:])
		if m < 0 {
			return nil, u, false
		}
		if num == frameField && typ == protowire.BytesType {
			v, _ := protowire.ConsumeBytes(u[off+n:])
			end := off + n + m
			switch {
			case off == 0:
				rest = u[end:]
			case end == len(u):
				rest = u[:off:off] // appends to the message's unknown fields must not reach the frame
			default:
				rest = append(append([]byte(nil), u[:off]...), u[end:]...)
			}
			return v, rest, true
		}
		off += n + m
	}
	return nil, u, false
}
