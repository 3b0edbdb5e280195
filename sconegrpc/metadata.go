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
	present, err = mergeValues(&f, md.Get(metadataKey))
	return f, present, err
}

func framesFromValues(vals []string) (f grpcframe.Frame, present bool, err error) {
	present, err = mergeValues(&f, vals)
	return f, present, err
}

// mergeValues adds the frames of vals, metadata values, to f (see
// grpcframe.Frame.Merge).
func mergeValues(f *grpcframe.Frame, vals []string) (present bool, err error) {
	for _, v := range vals {
		if err := f.Merge([]byte(v)); err != nil {
			return true, err
		}
	}
	return len(vals) > 0, nil
}

// requestFrame gathers the SCONEs a server request carries into f (whose
// SCONEs' storage the caller may provide): in its body (the frame field
// among the message's unknown fields, taken off so the handler never sees
// it) and in its metadata. hooked reports whether the caller runs the
// client hook; body whether it used the body carrier. spare is the storage
// of the body's frame when nothing else uses it (the codec's pooled buffer):
// the caller may reuse it once it is done with f. The unknown fields are
// the decoded request's own, so once the frame field is taken out of them no
// one else refers to its bytes.
func requestFrame(ctx context.Context, req any, f *grpcframe.Frame) (hooked, body bool, spare []byte, err error) {
	if m := messageV2Of(req); m != nil {
		r := m.ProtoReflect()
		u := r.GetUnknown()
		if fr, rest, ok := grpcframe.ExtractUnknown(u); ok {
			r.SetUnknown(rest)
			if len(rest) == 0 {
				spare = u
			}
			if err = f.Merge(fr); err != nil {
				return true, true, nil, err
			}
			hooked, body = true, true
		}
	}
	present, err := mergeValues(f, metadata.ValueFromIncomingContext(ctx, metadataKey))
	if err != nil {
		return true, body, spare, err
	}
	return hooked || present, body, spare, nil
}
