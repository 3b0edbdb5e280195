package benchpb

import (
	"context"

	"google.golang.org/grpc"
)

// StepMethod is the full name of Sessions.Step.
const StepMethod = "/scone.bench.Sessions/Step"

// SessionsServer is the server side of the Sessions service.
type SessionsServer interface {
	Step(context.Context, *StepRequest) (*StepReply, error)
}

// RegisterSessionsServer registers srv on s.
func RegisterSessionsServer(s grpc.ServiceRegistrar, srv SessionsServer) {
	s.RegisterService(&sessionsDesc, srv)
}

var sessionsDesc = grpc.ServiceDesc{
	ServiceName: "scone.bench.Sessions",
	HandlerType: (*SessionsServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Step",
		Handler: func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := new(StepRequest)
			if err := dec(req); err != nil {
				return nil, err
			}
			if in == nil {
				return srv.(SessionsServer).Step(ctx, req)
			}
			h := func(ctx context.Context, req any) (any, error) {
				return srv.(SessionsServer).Step(ctx, req.(*StepRequest))
			}
			return in(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: StepMethod}, h)
		},
	}},
	Metadata: "bench.proto",
}

// Step calls Sessions.Step on conn.
func Step(ctx context.Context, conn grpc.ClientConnInterface, req *StepRequest, opts ...grpc.CallOption) (*StepReply, error) {
	out := new(StepReply)
	if err := conn.Invoke(ctx, StepMethod, req, out, opts...); err != nil {
		return nil, err
	}
	return out, nil
}
