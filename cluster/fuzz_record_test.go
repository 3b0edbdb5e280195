package cluster

import (
	"context"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/cluster/clusterpb"
	"github.com/scone-project/scone/internal/badinput"
	"github.com/scone-project/scone/internal/grpcframe"
	"github.com/scone-project/scone/internal/hook"
)

// FuzzServeRecord: whatever record a node holds for a client (a peer wrote
// it: any SCONEs, version, stamp and copies), a call of that client is
// served, or fails with the status of a SCONE code, never a panic or an
// internal error; and a served call that changed the state leaves a record
// whose SCONEs all parse.
func FuzzServeRecord(f *testing.F) {
	c, err := badinput.Load("../testdata/badinput")
	if err != nil {
		f.Fatal(err)
	}
	sealer := testSealer(f)
	const method = "/sconetest.Counter/Add"
	good, err := hook.Seal(sealer, nil, &scone.SCONE{Service: "sconetest.Counter", Scope: "/sconetest.Counter/", Version: 3,
		IssuedAt: time.Now(), Expires: time.Now().Add(time.Hour), Data: []byte("a,b,")})
	if err != nil {
		f.Fatal(err)
	}
	seed := func(tokens ...[]byte) {
		b, err := proto.Marshal(&pb.Record{Rv: 1, Stamp: 1, Scones: tokens, Copies: 1})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(good)
	seed()
	for _, cs := range c.Cases {
		if cs.Carrier == badinput.Envelope && len(cs.Payloads[0]) <= 4<<10 {
			seed(good, cs.Payloads[0])
		}
	}

	cfg := DefaultConfig()
	cfg.Name, cfg.GossipAddr, cfg.PeerAddr, cfg.K = "fuzz", "127.0.0.1:0", "127.0.0.1:1", 1
	cfg.IdentityHeader = "scone-client"
	n, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(n.Close)
	for deadline := time.Now().Add(10 * time.Second); len(n.Members()) != 1; {
		if time.Now().After(deadline) {
			f.Fatal("the node does not see itself")
		}
		time.Sleep(10 * time.Millisecond)
	}
	intercept := n.UnaryServerInterceptor(sealer)
	handler := func(ctx context.Context, req any) (any, error) {
		out, err := (&counter{}).add(ctx, req.(*wrapperspb.StringValue).GetValue())
		return wrapperspb.String(out), err
	}
	info := &grpc.UnaryServerInfo{FullMethod: method}
	var clients int
	f.Fuzz(func(t *testing.T, b []byte) {
		var r pb.Record
		if proto.Unmarshal(b, &r) != nil {
			return
		}
		clients++
		client := "c" + strconv.Itoa(clients)
		key := headerKey(client)
		rec := fromPB(&r)
		rec.Key = key
		n.store.put(rec, 0, true)
		defer func() { n.store.drop(key, n.store.get(key)) }()
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(cfg.IdentityHeader, client))
		_, err := intercept(ctx, wrapperspb.String("x"), info, handler)
		if err != nil {
			if c := grpcframe.StatusCode(err); c == scone.CodeUnknown || c == scone.CodeInternal {
				t.Fatalf("call failed with code %v: %v", c, err)
			}
			return
		}
		held := n.store.get(key)
		if held == nil {
			t.Fatal("a served call that changed the state left no record")
		}
		for _, tok := range held.SCONEs {
			if _, err := hook.Peek(tok); err != nil {
				t.Fatalf("the record written holds a SCONE that does not parse: %v", err)
			}
		}
	})
}
