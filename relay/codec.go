package relay

import (
	"fmt"

	"google.golang.org/grpc/mem"
)

// rawCodec passes messages through as they are: the relay never decodes
// them. Each message keeps its buffers (a reference taken on receipt) until
// it is sent on, when gRPC frees them.
type rawCodec struct{}

// rawMsg is one message in transit.
type rawMsg struct{ data mem.BufferSlice }

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(*rawMsg)
	if !ok {
		return nil, fmt.Errorf("relay: cannot marshal %T", v)
	}
	out := m.data
	m.data = nil
	return out, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(*rawMsg)
	if !ok {
		return fmt.Errorf("relay: cannot unmarshal into %T", v)
	}
	data.Ref()
	m.data = data
	return nil
}
