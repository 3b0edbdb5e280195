package cluster

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/badinput"
	"github.com/scone-project/scone/internal/badinput/badgrpc"
)

// TestBadInput sends every gRPC case of the bad-input corpus to a node of a
// two-node cluster (k=2, real gRPC and memberlist on loopback) that serves
// the counter service under the corpus's service name, with the corpus's
// keys, so each corpus SCONE would be the service's own. The cluster holds
// the clients' SCONEs: a node ignores those a client sends, whatever they
// are, so every case succeeds with the state the cluster holds (alice's
// session; an empty state for a client with no name), and alice's record
// is not written. Only metadata that gRPC itself refuses fails, as the
// manifest says.
func TestBadInput(t *testing.T) {
	c, err := badinput.Load("../testdata/badinput")
	if err != nil {
		t.Fatal(err)
	}
	primary, keys, err := scone.ParseKeyFile(c.Keys)
	if err != nil {
		t.Fatal(err)
	}
	ring, err := scone.NewKeyRing(primary, keys...)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring)
	if err != nil {
		t.Fatal(err)
	}
	desc := counterService(c.Service)
	var nodes []*Node
	var addr string
	for i, name := range []string{"a", "b"} {
		peerLis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg := DefaultConfig()
		cfg.Name, cfg.GossipAddr, cfg.PeerAddr, cfg.K = name, "127.0.0.1:0", peerLis.Addr().String(), 2
		cfg.IdentityHeader = "scone-client"
		if i > 0 {
			cfg.Seeds = []string{nodes[0].GossipAddr()}
		}
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
		t.Cleanup(n.Close)
		go n.ServePeer(peerLis)
		if i == 0 {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer(n.ServerOptions(sealer)...)
			srv.RegisterService(desc, &counter{})
			go srv.Serve(lis)
			t.Cleanup(srv.Stop)
			addr = lis.Addr().String()
		}
	}
	for deadline := time.Now().Add(20 * time.Second); len(nodes[0].Members()) != 2 || len(nodes[1].Members()) != 2; {
		if time.Now().After(deadline) {
			t.Fatal("the two nodes do not see each other")
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })

	alice := metadata.Pairs("scone-client", "alice")
	ctx := context.Background()
	call := func(method, op string, md metadata.MD) (string, error) {
		out := new(wrapperspb.StringValue)
		err := conn.Invoke(metadata.NewOutgoingContext(ctx, md), "/"+c.Service+"/"+method, wrapperspb.String(op), out)
		return out.GetValue(), err
	}
	for _, op := range []string{"x", "y"} {
		if _, err := call("Add", op, alice); err != nil {
			t.Fatal(err)
		}
	}
	const held = "x,y,"
	rec, ok := nodes[0].Describe(headerKey("alice"))
	if !ok || rec.RV == 0 {
		t.Fatalf("alice's record: %+v %v", rec, ok)
	}
	get := "/" + c.Service + "/Get"
	cases := c.Select(true)
	for _, cs := range cases {
		for _, s := range []struct {
			how  string
			md   metadata.MD
			want string
			body bool
		}{
			{"alice, metadata", alice, held, false},
			{"alice, body", alice, held, true},
			{"anonymous, metadata", nil, "", false},
		} {
			if s.body && cs.Carrier != badinput.Envelope {
				continue
			}
			out := new(wrapperspb.StringValue)
			var err error
			if s.body {
				err = badgrpc.CallBody(ctx, conn, get, &cs, s.md, wrapperspb.String(""), out)
			} else {
				err = badgrpc.Call(ctx, conn, get, &cs, s.md, wrapperspb.String(""), out)
			}
			if cs.GRPC.Code == "" {
				// Refused by gRPC itself, before any hook.
				if err := badgrpc.Check(err, cs.GRPC); err != nil {
					t.Errorf("%s (%s): %v", cs.Name, s.how, err)
				}
				continue
			}
			if err != nil || out.GetValue() != s.want {
				t.Errorf("%s (%s): %q, %v; want %q, the state the cluster holds", cs.Name, s.how, out.GetValue(), err, s.want)
			}
		}
		if got, err := call("Get", "", alice); err != nil || got != held {
			t.Fatalf("after %s, alice's state is %q, %v; want %q", cs.Name, got, err, held)
		}
		for _, n := range nodes {
			if r, ok := n.Describe(headerKey("alice")); !ok || r.RV != rec.RV {
				t.Fatalf("after %s, %s holds alice's record at %+v, was version %d", cs.Name, n.Name(), r, rec.RV)
			}
		}
	}
	if len(cases) < 30 {
		t.Errorf("only %d gRPC cases in the corpus", len(cases))
	}
}
