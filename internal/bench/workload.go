package bench

import (
	"context"
	"encoding/binary"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/bench/benchpb"
)

// MinSize and MaxSize bound the state size of a session, in bytes: the
// state starts with the session's step count (8 bytes).
const (
	MinSize = 16
	MaxSize = 1 << 20
)

// keeper keeps the sessions' state for the server: step does one
// read-modify-write of a session's state of size bytes and returns the
// session's step count after it.
type keeper interface {
	step(ctx context.Context, session string, size int) (uint64, error)
}

// sessions is the Sessions service, the same handler for every contender;
// only where its keeper keeps the state differs.
type sessions struct {
	keep keeper
}

func (s sessions) Step(ctx context.Context, req *benchpb.StepRequest) (*benchpb.StepReply, error) {
	size := int(req.GetSize())
	if size < MinSize || size > MaxSize {
		return nil, status.Errorf(codes.InvalidArgument, "state size %d out of [%d, %d]", size, MinSize, MaxSize)
	}
	n, err := s.keep.step(ctx, req.GetSession(), size)
	if err != nil {
		return nil, err
	}
	return &benchpb.StepReply{Count: n}, nil
}

// advance is one step of a session: it counts the step in the first 8
// bytes of the state d and changes one byte past them. A state of another
// size than size starts a new session.
func advance(d []byte, size int) ([]byte, uint64) {
	if len(d) != size {
		d = make([]byte, size)
	}
	n := binary.LittleEndian.Uint64(d) + 1
	binary.LittleEndian.PutUint64(d, n)
	d[8+int(n%uint64(size-8))]++
	return d, n
}

// stateless keeps nothing: the plain gRPC ceiling.
type stateless struct{}

func (stateless) step(context.Context, string, int) (uint64, error) { return 0, nil }

// sconeKeeper keeps the state in the call's SCONE, wherever the deployment
// holds it (the client, a relay, the cluster): the handler is the same.
type sconeKeeper struct{}

func (sconeKeeper) step(ctx context.Context, _ string, size int) (uint64, error) {
	st, ok := scone.FromContext(ctx)
	if !ok {
		return 0, status.Error(codes.FailedPrecondition, "no SCONE state in the call's context")
	}
	var n uint64
	st.Update(func(d []byte) []byte {
		d, n = advance(d, size)
		return d
	})
	return n, nil
}

// wrongCount is the error of a reply whose count is not the session's.
func wrongCount(got, want uint64) error {
	return fmt.Errorf("session at step %d got count %d: state lost or stale", want, got)
}
