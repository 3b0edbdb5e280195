package sconegrpc_test

import (
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/sconegrpc"
)

const gatewayScope = "/bookstore.v1.Gateway/"

func newSealer(t testing.TB, opts ...scone.Option) *scone.Sealer {
	t.Helper()
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scone.NewSealer(ring, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// deploy runs the bookstore with n replicas per tier on 127.0.0.1.
func deploy(t testing.TB, s *scone.Sealer, n int) *shop.Deployment {
	t.Helper()
	d, err := shop.Deploy(s, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// shopper is a client of the gateway with the hook and its own holder.
type shopper struct {
	pb.GatewayClient
	dict *scone.Dict
	conn *grpc.ClientConn
}

func newShopper(t testing.TB, d *shop.Deployment, opts ...sconegrpc.ClientOption) *shopper {
	t.Helper()
	dict := scone.NewDict()
	conn, err := shop.DialReplicas(d.Addrs(shop.RoleGateway),
		sconegrpc.DialOptions(append([]sconegrpc.ClientOption{sconegrpc.WithHolder(dict)}, opts...)...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &shopper{GatewayClient: pb.NewGatewayClient(conn), dict: dict, conn: conn}
}

// services returns the services the shopper holds SCONEs of, by scope.
func (s *shopper) services() map[string]string {
	out := map[string]string{}
	for _, h := range s.dict.Headers() {
		out[h.Service] = h.Scope
	}
	return out
}

var (
	dune        = "9780441013593"
	neuromancer = "9780441569595"
)
