package scone

import (
	"context"
	"encoding/json"

	"google.golang.org/protobuf/proto"
)

// Codec converts a handler's own state type to and from the data of a SCONE.
type Codec[T any] interface {
	// Marshal appends the encoding of v to dst.
	Marshal(dst []byte, v T) ([]byte, error)
	// Unmarshal decodes data into v.
	Unmarshal(data []byte, v *T) error
}

// Typed is a typed view of a request's state data, so handlers work with
// their own Go or protobuf types instead of bytes:
//
//	var cart = scone.NewTyped(scone.ProtoCodec[*pb.Cart]())
//
//	c, ok, err := cart.Load(ctx) // ok is false on a first call
//	c.Items = append(c.Items, item)
//	err = cart.Store(ctx, c)
type Typed[T any] struct{ codec Codec[T] }

// NewTyped returns a typed view using codec.
func NewTyped[T any](codec Codec[T]) Typed[T] { return Typed[T]{codec: codec} }

// Load decodes the request's state data. ok is false (with the zero T) when
// the state holds no data yet. Data that does not decode fails with
// CodeMalformed; a context without a State with CodeInternal.
func (t Typed[T]) Load(ctx context.Context) (v T, ok bool, err error) {
	st, found := FromContext(ctx)
	if !found {
		return v, false, errNoState
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.sc.Data) == 0 {
		return v, false, nil
	}
	if err := t.codec.Unmarshal(st.sc.Data, &v); err != nil {
		return v, false, WrapError(CodeMalformed, "state data does not decode", err)
	}
	return v, true, nil
}

// Store encodes v as the request's state data.
func (t Typed[T]) Store(ctx context.Context, v T) error {
	st, found := FromContext(ctx)
	if !found {
		return errNoState
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	b, err := t.codec.Marshal(nil, v) // a fresh buffer: a failed encode changes nothing
	if err != nil {
		return WrapError(CodeInternal, "state does not encode", err)
	}
	st.touch()
	st.sc.Data = b
	return nil
}

var errNoState = errCode(CodeInternal, "no SCONE state in the context: is the server hook installed?")

// JSONCodec returns the Codec that encodes T with encoding/json. A server
// that does not know a field drops it on re-sealing: for rolling upgrades
// that add state, prefer ProtoCodec, which keeps unknown fields.
func JSONCodec[T any]() Codec[T] { return jsonCodec[T]{} }

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Marshal(dst []byte, v T) ([]byte, error) {
	b, err := json.Marshal(v)
	return append(dst, b...), err
}

func (jsonCodec[T]) Unmarshal(data []byte, v *T) error { return json.Unmarshal(data, v) }

// ProtoCodec returns the Codec of a protobuf message type M (a pointer type
// such as *pb.Cart). Protobuf keeps fields it does not know through a decode
// and re-encode, so servers of two versions can serve one session in turn.
// Unmarshal allocates a new message.
func ProtoCodec[M proto.Message]() Codec[M] { return protoCodec[M]{} }

type protoCodec[M proto.Message] struct{}

func (protoCodec[M]) Marshal(dst []byte, v M) ([]byte, error) {
	return proto.MarshalOptions{}.MarshalAppend(dst, v)
}

func (protoCodec[M]) Unmarshal(data []byte, v *M) error {
	m := (*v).ProtoReflect().Type().New().Interface().(M)
	if err := proto.Unmarshal(data, m); err != nil {
		return err
	}
	*v = m
	return nil
}
