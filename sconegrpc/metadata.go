package sconegrpc

import (
	"context"

	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone/internal/grpcframe"
)

// metadataKey is the metadata key of the metadata carrier (see
// grpcframe.MetadataKey).
const metadataKey = grpcframe.MetadataKey

// framesFromMetadata decodes every frame under metadataKey in md into one.
// present reports whether the key was there at all (a peer with the hook).
func framesFromMetadata(md metadata.MD) (f grpcframe.Frame, present bool, err error) {
	return framesFromValues(md.Get(metadataKey))
}

func framesFromValues(vals []string) (f grpcframe.Frame, present bool, err error) {
	for _, v := range vals {
		g, err := grpcframe.ParseFrame([]byte(v))
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
func requestFrame(ctx context.Context, req any) (f grpcframe.Frame, hooked, body bool, err error) {
	if m := messageV2Of(req); m != nil {
		r := m.ProtoReflect()
		if fr, rest, ok := grpcframe.ExtractUnknown(r.GetUnknown()); ok {
			r.SetUnknown(rest)
			if f, err = grpcframe.ParseFrame(fr); err != nil {
				return f, true, true, err
			}
			hooked, body = true, true
		}
	}
	g, present, err := framesFromValues(metadata.ValueFromIncomingContext(ctx, metadataKey))
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
