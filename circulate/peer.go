package circulate

import (
	"context"
	"errors"
	"fmt"

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
	if p.s.members.View().Refuses(req.View) {
		return &pb.QueryReply{Refused: true}, nil
	}
	st := p.s.slot(req.Key).state()
	r := &pb.QueryReply{MovedTo: st.movedTo}
	if now := p.s.cfg.Now(); live(st.it, now) {
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
	views := s.members.View()
	if req.Mode != pb.PutRequest_UNDO && views.Refuses(req.View) {
		return &pb.PutReply{ViewsDiffer: true}, nil // before waiting for the slot
	}
	if req.Mode == pb.PutRequest_HANDOFF && s.leaving.Load() {
		// It hands its own copies on: the sender tries again (elsewhere,
		// once this relay has left).
		return &pb.PutReply{ViewsDiffer: true}, nil
	}
	wait := ctx
	if req.Mode != pb.PutRequest_UNDO {
		// The slot may be held by this relay's own hand-off or write of
		// the client, which may be waiting for the sender's slot in turn:
		// refuse (the sender retries) rather than wait for its timeout.
		var cancel context.CancelFunc
		wait, cancel = context.WithTimeout(ctx, s.cfg.Timeout/4)
		defer cancel()
	}
	sl, err := s.lockSlot(wait, in.key)
	switch {
	case err != nil && req.Mode == pb.PutRequest_UPDATE && ctx.Err() == nil:
		// Busy: it took nothing, and nothing says another write came
		// first (its own hand-off of the client may hold the slot).
		s.cfg.Logger.Debug("not taken: busy", "relay", s.cfg.Name, "key", short(in.key), "gen", in.gen, "hop", in.hop)
		return nil, status.Error(codes.FailedPrecondition, fmt.Errorf("%w: the client's copy is busy", errNotTaken).Error())
	case err != nil && req.Mode != pb.PutRequest_UNDO && ctx.Err() == nil:
		return &pb.PutReply{}, nil // busy: refused, by a copy not yet settled
	case err != nil:
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	defer sl.release()
	cur := sl.state().it
	res := s.rules.put(req.Mode, cur, in, req.Base, views.Refuses(req.View), s.cfg.Now())
	switch {
	case errors.Is(res.err, errNotTaken):
		// It took nothing: the sender's write fails with nothing changed
		// (see written), where a call that got no answer is in doubt.
		s.cfg.Logger.Debug("not taken", "relay", s.cfg.Name, "key", short(in.key), "gen", in.gen, "hop", in.hop, "mode", req.Mode, "err", res.err)
		return nil, status.Error(codes.FailedPrecondition, res.err.Error())
	case res.err != nil:
		return nil, status.Error(codes.InvalidArgument, res.err.Error())
	case res.set && req.Mode == pb.PutRequest_UNDO:
		s.cfg.Logger.Debug("undone", "relay", s.cfg.Name, "key", short(in.key), "gen", in.gen, "hop", in.hop, "back_to", res.it != nil)
	case res.set:
		s.cfg.Logger.Debug("taken", "relay", s.cfg.Name, "key", short(in.key), "gen", in.gen, "hop", in.hop, "holders", in.holders, "mode", req.Mode)
	}
	if res.set {
		sl.set(res.it)
	}
	return res.reply, nil
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
	if retires(cur, req.Gen, req.Hop) {
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
