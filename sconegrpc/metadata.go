package sconegrpc

import (
	"context"

	"google.golang.org/grpc/metadata"
)

// MetadataKey is the metadata key of the metadata carrier: its value is a
// frame (the same protobuf as in message bodies). Streams carry SCONEs in
// it both ways (request headers, reply trailers); unary calls use it for
// replies that fail, and when the server lacks the body codec.
const MetadataKey = "scone-bin"

// framesFromMetadata decodes every frame under MetadataKey in md into one.
// present reports whether the key was there at all (a peer with the hook).
func framesFromMetadata(md metadata.MD) (f Frame, present bool, err error) {
	return framesFromValues(md.Get(MetadataKey))
}

func framesFromValues(vals []string) (f Frame, present bool, err error) {
	for _, v := range vals {
		g, err := ParseFrame([]byte(v))
		if err != nil {
			return f, true, err
		}
		f.SCONEs = append(f.SCONEs, g.SCONEs...)
		f.Dropped = append(f.Dropped, g.Dropped...)
		if f.Scope == "" {
			f.Scope = g.Scope
		}
	}
	return f, len(vals) > 0, nil
}

// requestFrame gathers the SCONEs a server request carries, in its body (the
// frame field among the message's unknown fields, taken off so the handler
// never sees it) and in its metadata. hooked reports whether the caller runs
// the client hook; body whether it used the body carrier.
func requestFrame(ctx context.Context, req any) (f Frame, hooked, body bool, err error) {
	if m := messageV2Of(req); m != nil {
		r := m.ProtoReflect()
		if fr, rest, ok := extractUnknown(r.GetUnknown()); ok {
			r.SetUnknown(rest)
			if f, err = ParseFrame(fr); err != nil {
				return f, true, true, err
			}
			hooked, body = true, true
		}
	}
	g, present, err := framesFromValues(metadata.ValueFromIncomingContext(ctx, MetadataKey))
	if err != nil {
		return f, true, body, err
	}
	if present {
		hooked = true
		f.SCONEs = append(f.SCONEs, g.SCONEs...)
		if f.Scope == "" {
			f.Scope = g.Scope
		}
	}
	return f, hooked, body, nil
}
