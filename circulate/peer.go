package circulate

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/circulate/circulatepb"
)

// peerServer serves the Circulation service to the other relays.
type peerServer struct {
	pb.UnimplementedCirculationServer
	s *Store
}

var _ pb.CirculationServer = peerServer{}

// Query implements pb.CirculationServer.
func (p peerServer) Query(_ context.Context, req *pb.QueryRequest) (*pb.QueryReply, error) {
	if v := req.View; v != 0 && v != p.s.viewHash() {
		return &pb.QueryReply{Refused: true}, nil
	}
	st := p.s.slot(req.Key).state()
	r := &pb.QueryReply{MovedTo: st.movedTo}
	if now := p.s.cfg.Now(); st.it != nil && st.it.expires.After(now) {
		r.Copy = st.it.toProto()
		r.AgeMs = uint64(max(0, now.Sub(st.it.since).Milliseconds()))
	}
	return r, nil
}

// Put implements pb.CirculationServer.
func (p peerServer) Put(ctx context.Context, req *pb.PutRequest) (*pb.PutReply, error) {
	s := p.s
	in, err := fromProto(req.Copy, s.cfg.MaxPerClient, s.cfg.Now())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := s.checkSize(in); err != nil {
		return nil, status.Error(codes.ResourceExhausted, err.Error())
	}
	if v := req.View; v != 0 && v != s.viewHash() && req.Mode != pb.PutRequest_UNDO {
		// One of the two may be cut off from the others' gossip: a copy
		// it moves or writes is not to be mixed with theirs.
		return &pb.PutReply{ViewsDiffer: true}, nil
	}
	sl, err := s.lockSlot(ctx, in.key)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer sl.release()
	cur := sl.state().it
	switch req.Mode {
	case pb.PutRequest_HANDOFF:
		switch {
		case cur != nil && cur.newer(in):
			return &pb.PutReply{AgeMs: uint64(max(0, s.cfg.Now().Sub(cur.since).Milliseconds()))}, nil
		case !in.same(cur):
			s.cfg.Logger.Debug("taken", "relay", s.cfg.Name, "key", short(in.key), "gen", in.gen, "hop", in.hop, "holders", in.holders)
			in.prev = cur.withoutPrev() // for the UNDO of a hand-off that fails
			sl.set(in)
		}
	case pb.PutRequest_UPDATE:
		if cur == nil {
			// It lost its copy (it restarted): not a conflict, and the
			// primary recreates the copy at its next hand-off.
			return nil, status.Error(codes.Unavailable, "circulate: this relay holds no copy to update")
		}
		if cur.gen != req.Base || cur.hop != in.hop {
			return &pb.PutReply{}, nil
		}
		in.prev = cur.withoutPrev()
		sl.set(in)
	case pb.PutRequest_UNDO:
		if in.same(cur) {
			s.cfg.Logger.Debug("undone", "relay", s.cfg.Name, "key", short(in.key), "gen", in.gen, "hop", in.hop, "back_to", cur.prev != nil)
			sl.set(cur.prev)
		}
	default:
		return nil, status.Errorf(codes.InvalidArgument, "circulate: unknown put mode %d", req.Mode)
	}
	return &pb.PutReply{Ok: true}, nil
}

// Retire implements pb.CirculationServer.
func (p peerServer) Retire(ctx context.Context, req *pb.RetireRequest) (*pb.RetireReply, error) {
	s := p.s
	sl, err := s.lockSlot(ctx, req.Key)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer sl.release()
	cur := sl.state().it
	if cur != nil && !cur.newer(&item{gen: req.Gen, hop: req.Hop}) {
		s.cfg.Logger.Debug("retired", "relay", s.cfg.Name, "key", short(req.Key), "gen", cur.gen, "hop", cur.hop, "moved_to", req.MovedTo)
		sl.moved(req.MovedTo, s.cfg.Now())
	}
	return &pb.RetireReply{}, nil
}

// Apply implements pb.CirculationServer.
func (p peerServer) Apply(ctx context.Context, req *pb.ApplyRequest) (*pb.ApplyReply, error) {
	if req.Key == "" {
		return nil, status.Error(codes.InvalidArgument, "circulate: a write without a key")
	}
	return p.s.applyHere(ctx, req), nil
}

// checkSize refuses a copy over the per-client bounds.
func (s *Store) checkSize(it *item) error {
	n := 0
	for _, tok := range it.scones {
		n += len(tok)
	}
	if len(it.scones) > s.cfg.MaxPerClient || n > s.cfg.MaxBytesPerClient {
		return scone.NewError(scone.CodeExhausted, "circulate: a copy over the per-client bounds")
	}
	return nil
}
