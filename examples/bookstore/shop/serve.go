package shop

import (
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/sconegrpc"
)

// Role names one of the three services.
type Role string

// The roles.
const (
	RoleGateway   Role = "gateway"
	RoleCart      Role = "cart"
	RoleInventory Role = "inventory"
)

// Backends are a replica's connections to the tiers below it.
type Backends struct {
	Cart      pb.CartClient
	Inventory pb.InventoryClient
}

// NewServer returns a gRPC server for one role, with the SCONE hook and
// server reflection. The gateway needs both back ends, the cart needs
// Inventory, inventory needs none.
func NewServer(role Role, sealer *scone.Sealer, b Backends, opts ...grpc.ServerOption) (*grpc.Server, error) {
	s := grpc.NewServer(append(sconegrpc.ServerOptions(sealer), opts...)...)
	switch role {
	case RoleGateway:
		if b.Cart == nil || b.Inventory == nil {
			return nil, fmt.Errorf("shop: the gateway needs the cart and inventory back ends")
		}
		pb.RegisterGatewayServer(s, &Gateway{Cart: b.Cart, Inventory: b.Inventory})
	case RoleCart:
		if b.Inventory == nil {
			return nil, fmt.Errorf("shop: the cart needs the inventory back end")
		}
		pb.RegisterCartServer(s, &Cart{Inventory: b.Inventory})
	case RoleInventory:
		pb.RegisterInventoryServer(s, Inventory{})
	default:
		return nil, fmt.Errorf("shop: unknown role %q (want gateway, cart or inventory)", role)
	}
	reflection.Register(s)
	return s, nil
}

// DialReplicas connects to the replicas of one service on addrs,
// round-robin, reconnecting within a second to a replica that comes back.
// Extra options come after the defaults (plaintext transport).
func DialReplicas(addrs []string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if len(addrs) == 0 {
		return nil, fmt.Errorf("shop: no replica addresses")
	}
	r := manual.NewBuilderWithScheme("replicas")
	eps := make([]resolver.Endpoint, len(addrs))
	for i, a := range addrs {
		eps[i] = resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}}
	}
	r.InitialState(resolver.State{Endpoints: eps})
	base := []grpc.DialOption{
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}),
	}
	return grpc.NewClient(r.Scheme()+":///replicas", append(base, opts...)...)
}

// DialBackend connects a front end to a back end's replicas, with the client
// hook in propagation mode (sconegrpc.WithoutHolder). Extra options (for
// example Tracing's) come after the hook's.
func DialBackend(addrs []string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return DialReplicas(addrs, append(sconegrpc.DialOptions(sconegrpc.WithoutHolder()), opts...)...)
}
