package sconegrpc_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/sconegrpc"
	"github.com/scone-project/scone/sconegrpc/internal/upgradepb"
)

// visitFunc serves one visit: it counts it in the session's state and
// returns what the state holds.
type visitFunc func(ctx context.Context, note string) (visits uint64, kept string, err error)

// visitsDesc is the test service of one method, Visit, by hand: the same
// service name on both versions, so the hook gives them one session.
func visitsDesc(version uint32) grpc.ServiceDesc {
	return grpc.ServiceDesc{
		ServiceName: "scone.upgrade.Visits",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Visit",
			Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
				in := new(upgradepb.Visit)
				if err := dec(in); err != nil {
					return nil, err
				}
				h := func(ctx context.Context, req any) (any, error) {
					visits, note, err := srv.(visitFunc)(ctx, req.(*upgradepb.Visit).GetNote())
					return &upgradepb.Seen{Visits: visits, Note: note, Version: version}, err
				}
				return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/scone.upgrade.Visits/Visit"}, h)
			},
		}},
	}
}

// protoV1 and protoV2 are the two versions of a server that keeps its state
// with ProtoCodec; jsonV1 and jsonV2 the same with JSONCodec.
func protoV1() visitFunc {
	state := scone.NewTyped(scone.ProtoCodec[*upgradepb.SessionV1]())
	return func(ctx context.Context, _ string) (uint64, string, error) {
		s, ok, err := state.Load(ctx)
		if err != nil {
			return 0, "", err
		}
		if !ok {
			s = &upgradepb.SessionV1{}
		}
		s.Visits++
		return s.Visits, "", state.Store(ctx, s)
	}
}

func protoV2() visitFunc {
	state := scone.NewTyped(scone.ProtoCodec[*upgradepb.SessionV2]())
	return func(ctx context.Context, note string) (uint64, string, error) {
		s, ok, err := state.Load(ctx)
		if err != nil {
			return 0, "", err
		}
		if !ok {
			s = &upgradepb.SessionV2{}
		}
		s.Visits++
		if note != "" {
			s.Note = note
		}
		return s.Visits, s.Note, state.Store(ctx, s)
	}
}

type (
	sessionV1 struct {
		Visits uint64 `json:"visits"`
	}
	sessionV2 struct {
		Visits uint64 `json:"visits"`
		Note   string `json:"note,omitempty"`
	}
)

func jsonV1() visitFunc {
	state := scone.NewTyped(scone.JSONCodec[sessionV1]())
	return func(ctx context.Context, _ string) (uint64, string, error) {
		s, _, err := state.Load(ctx)
		if err != nil {
			return 0, "", err
		}
		s.Visits++
		return s.Visits, "", state.Store(ctx, s)
	}
}

func jsonV2() visitFunc {
	state := scone.NewTyped(scone.JSONCodec[sessionV2]())
	return func(ctx context.Context, note string) (uint64, string, error) {
		s, _, err := state.Load(ctx)
		if err != nil {
			return 0, "", err
		}
		s.Visits++
		if note != "" {
			s.Note = note
		}
		return s.Visits, s.Note, state.Store(ctx, s)
	}
}

// TestRollingUpgrade: during a rolling upgrade, a session is served in turn
// by servers of version 1 and version 2, whose state has one more field.
// With ProtoCodec, the field version 2 sets survives every re-seal by
// version 1, which keeps it as an unknown field; with JSONCodec, version 1
// drops it the first time it re-seals the state (encoding/json keeps no
// field the type does not declare), and version 2 sees it empty after that.
// Both keep the fields the two versions share.
func TestRollingUpgrade(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		v1, v2   func() visitFunc
		keepsNew bool
	}{
		{"ProtoCodec", protoV1, protoV2, true},
		{"JSONCodec", jsonV1, jsonV2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sealer := newSealer(t)
			dict := scone.NewDict()
			visit := map[uint32]func(note string) (*upgradepb.Seen, error){}
			for version, impl := range map[uint32]visitFunc{1: tc.v1(), 2: tc.v2()} {
				srv := grpc.NewServer(sconegrpc.ServerOptions(sealer)...)
				desc := visitsDesc(version)
				srv.RegisterService(&desc, impl)
				lis, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				go srv.Serve(lis)
				defer srv.Stop()
				conn, err := grpc.NewClient(lis.Addr().String(), append(sconegrpc.DialOptions(sconegrpc.WithHolder(dict)),
					grpc.WithTransportCredentials(insecure.NewCredentials()))...)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				visit[version] = func(note string) (*upgradepb.Seen, error) {
					seen := new(upgradepb.Seen)
					err := conn.Invoke(context.Background(), "/scone.upgrade.Visits/Visit", &upgradepb.Visit{Note: note}, seen)
					return seen, err
				}
			}

			// Version 2 writes the note, then the versions take turns,
			// version 1 twice in a row once.
			const note = "written by version 2"
			rewritten := false // version 1 has re-sealed the state since the note
			for i, version := range []uint32{2, 1, 2, 1, 1, 2, 1, 2} {
				n := ""
				if i == 0 {
					n = note
				}
				seen, err := visit[version](n)
				if err != nil {
					t.Fatalf("visit %d (version %d): %v", i+1, version, err)
				}
				if seen.Visits != uint64(i+1) {
					t.Fatalf("visit %d (version %d) counts %d visits", i+1, version, seen.Visits)
				}
				if version == 1 {
					rewritten = true
					continue
				}
				want := note
				if rewritten && !tc.keepsNew {
					want = ""
				}
				if seen.Note != want {
					t.Fatalf("visit %d (version 2, after version 1 re-sealed: %v): note %q, want %q", i+1, rewritten, seen.Note, want)
				}
			}
			if n := len(dict.Headers()); n != 1 {
				t.Errorf("the client holds %d SCONEs, want 1: one session for both versions", n)
			}
		})
	}
}
