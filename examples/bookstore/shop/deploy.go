package shop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
)

// Deployment runs the whole bookstore on 127.0.0.1 in this process: several
// replicas of each tier, each a gRPC server on its own port, every front end
// reaching its back ends round-robin. Replicas can be killed and restarted
// while it serves. Tests and the demo use it.
type Deployment struct {
	sealer *scone.Sealer
	tiers  map[Role][]*Replica
	conns  []*grpc.ClientConn
	http   bool
	b      Backends
	sopts  []grpc.ServerOption // WithTracerProvider
	dopts  []grpc.DialOption
}

// DeployOption configures Deploy.
type DeployOption func(*Deployment)

// WithHTTP makes every gateway replica serve the HTTP front too
// (HTTPHandler), on a port of its own (Replica.HTTPAddr).
func WithHTTP() DeployOption { return func(d *Deployment) { d.http = true } }

// Replica is one server process of a tier (here, one gRPC server).
type Replica struct {
	Role     Role
	Name     string // for example "cart-2"
	Addr     string
	HTTPAddr string // the HTTP front of a gateway replica, with WithHTTP

	served atomic.Int64
	d      *Deployment
	b      Backends

	mu   sync.Mutex
	srv  *grpc.Server // nil while down
	hsrv *http.Server // the HTTP front, if any
}

// Deploy starts n replicas of each tier, all sealing with sealer.
func Deploy(sealer *scone.Sealer, n int, opts ...DeployOption) (*Deployment, error) {
	d := &Deployment{sealer: sealer, tiers: map[Role][]*Replica{}}
	for _, o := range opts {
		o(d)
	}
	// Listen first, so every tier knows the addresses of the one below.
	var listeners []net.Listener
	closeAll := func() {
		for _, l := range listeners {
			l.Close()
		}
		d.Close()
	}
	for _, role := range []Role{RoleInventory, RoleCart, RoleGateway} {
		for i := range n {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				closeAll()
				return nil, err
			}
			listeners = append(listeners, lis)
			r := &Replica{Role: role, Name: fmt.Sprintf("%s-%d", role, i+1), Addr: lis.Addr().String(), d: d}
			if role == RoleGateway && d.http {
				hl, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					closeAll()
					return nil, err
				}
				r.HTTPAddr = hl.Addr().String()
				hl.Close() // serve listens again, as a restart does
			}
			d.tiers[role] = append(d.tiers[role], r)
		}
	}
	for _, role := range []Role{RoleInventory, RoleCart} {
		conn, err := DialBackend(d.Addrs(role), d.dopts...)
		if err != nil {
			closeAll()
			return nil, err
		}
		d.conns = append(d.conns, conn)
	}
	b := Backends{Inventory: pb.NewInventoryClient(d.conns[0]), Cart: pb.NewCartClient(d.conns[1])}
	d.b = b
	i := 0
	for _, role := range []Role{RoleInventory, RoleCart, RoleGateway} {
		for _, r := range d.tiers[role] {
			r.b = b
			if err := r.serve(listeners[i]); err != nil {
				closeAll()
				return nil, err
			}
			i++
		}
	}
	return d, nil
}

// Backends returns the deployment's connections to its back ends, for a
// front end of one's own (see HTTPHandler).
func (d *Deployment) Backends() Backends { return d.b }

// Replicas returns the replicas of a tier.
func (d *Deployment) Replicas(role Role) []*Replica { return d.tiers[role] }

// Addrs returns the addresses of a tier's replicas.
func (d *Deployment) Addrs(role Role) []string {
	var out []string
	for _, r := range d.tiers[role] {
		out = append(out, r.Addr)
	}
	return out
}

// Close stops every replica and connection.
func (d *Deployment) Close() {
	for _, rs := range d.tiers {
		for _, r := range rs {
			r.Kill()
		}
	}
	for _, c := range d.conns {
		c.Close()
	}
}

func (r *Replica) serve(lis net.Listener) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.serveLocked(lis)
}

func (r *Replica) serveLocked(lis net.Listener) error {
	srv, err := NewServer(r.Role, r.d.sealer, r.b, append(slices.Clip(r.d.sopts), grpc.ChainUnaryInterceptor(r.count))...)
	if err != nil {
		lis.Close()
		return err
	}
	if r.HTTPAddr != "" {
		hl, err := net.Listen("tcp", r.HTTPAddr)
		if err != nil {
			lis.Close()
			return err
		}
		g := &Gateway{Cart: r.b.Cart, Inventory: r.b.Inventory}
		h := HTTPHandler(g, r.d.sealer)
		r.hsrv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.served.Add(1)
			h.ServeHTTP(w, req)
		}), ReadHeaderTimeout: 10 * time.Second}
		go r.hsrv.Serve(hl)
	}
	r.srv = srv
	go srv.Serve(lis)
	return nil
}

func (r *Replica) count(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	r.served.Add(1)
	return h(ctx, req)
}

// Served returns how many unary calls the replica has served.
func (r *Replica) Served() int64 { return r.served.Load() }

// Up reports whether the replica is serving.
func (r *Replica) Up() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv != nil
}

// Kill stops the replica at once, as a crash would: open connections are
// closed and calls in flight fail. It holds no state to lose.
func (r *Replica) Kill() {
	r.mu.Lock()
	srv, hsrv := r.srv, r.hsrv
	r.srv, r.hsrv = nil, nil
	r.mu.Unlock()
	if hsrv != nil {
		hsrv.Close()
	}
	if srv != nil {
		srv.Stop()
	}
}

// ErrUp is what Restart returns for a replica that is up.
var ErrUp = errors.New("shop: the replica is up")

// Restart starts a killed replica again on the same address.
func (r *Replica) Restart() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.srv != nil {
		return ErrUp
	}
	lis, err := net.Listen("tcp", r.Addr)
	if err != nil {
		return err
	}
	return r.serveLocked(lis)
}
