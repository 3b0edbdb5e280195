package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/reflection"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/bench/benchpb"
	"github.com/scone-project/scone/sconegrpc"
)

// A Contender is one way of keeping the sessions' state: a column of the
// comparison. Its servers run on 127.0.0.1 for the whole bench.
type Contender struct {
	// Name is the contender's short name (the --contenders flag's words).
	Name string
	// About says in a line what runs.
	About string
	// Stateful is false for the plain gRPC ceiling, which keeps no state:
	// its replies are not checked against the sessions' step counts.
	Stateful bool

	start func(ctx context.Context) (*running, error)
}

// Contender names, in the order they run within a round.
const (
	Plain          = "plain"
	Map            = "map"
	Redis          = "redis"
	Client         = "client"
	Nginx          = "nginx"
	RelayMemory    = "relay-memory"
	RelayJetStream = "relay-jetstream"
	ClusterK2      = "cluster-k2"
	Circulate      = "circulate"
)

// Contenders returns every contender, in the order they run within a round.
func Contenders() []Contender {
	return append([]Contender{
		{Plain, "plain gRPC, no state (the ceiling)", false, startPlain},
		{Map, "in-memory sticky sessions: a map in the server", true, startMap},
		{Redis, "a Redis session store: GET + SET per call on a redis-server the bench starts", true, startRedis},
		{Client, "SCONE client mode: the client holds the SCONE", true, startClient},
		{Nginx, "SCONE client mode through nginx grpc_pass: the plain-proxy anchor for relay mode", true, startNginx},
		{RelayMemory, "SCONE relay mode, memory store: clients without SCONE code", true, startRelayMemory},
		{RelayJetStream, "SCONE relay mode, JetStream store (embedded NATS, every write synced to disk)", true, startRelayJetStream},
		{ClusterK2, "SCONE cluster mode: four nodes keep each session on k=2 of them", true, startClusterK2},
		{Circulate, "SCONE circulation mode: three relays pass each session's SCONE among them (2 copies)", true, startCirculateRelays},
	}, httpContenders()...)
}

// A SkipError says why a contender cannot run here, and how to make it run.
// The bench lists it and goes on without it.
type SkipError struct {
	Reason string
}

// Error returns why the contender was skipped.
func (e *SkipError) Error() string { return e.Reason }

// running is a started contender: the connections callers spread over, and
// how a session's calls carry its identity.
type running struct {
	conns []*grpc.ClientConn
	// step, if set, makes caller i's call instead of a gRPC call on conns.
	step func(ctx context.Context, i int, req *benchpb.StepRequest) (*benchpb.StepReply, error)
	// session returns the context of a new session's calls.
	session func(ctx context.Context, id string) context.Context
	// pids are the external processes (redis-server, nginx) whose CPU
	// time counts with this process's.
	pids func() []int
	// extMemory, if set, returns the bytes of session state held outside
	// this process (redis-server's dataset).
	extMemory func(ctx context.Context) (int64, error)
	closers   []func()
	// callerWire counts the bytes on the callers' connections (to the
	// server, relay, node or nginx they call); serverWire those on the
	// connections the Sessions servers accept (from the callers, a relay,
	// nginx). Both ends of a connection count it once.
	callerWire, serverWire atomic.Int64
}

func (r *running) onClose(f func()) { r.closers = append(r.closers, f) }

func (r *running) close() {
	for _, c := range r.conns {
		c.Close()
	}
	for i := len(r.closers) - 1; i >= 0; i-- {
		r.closers[i]()
	}
}

// startContender starts c, closing what it started if it fails.
func startContender(ctx context.Context, c Contender) (*running, error) {
	r, err := c.start(ctx)
	if err != nil {
		var skip *SkipError
		if !errors.As(err, &skip) {
			err = fmt.Errorf("starting %s: %w", c.Name, err)
		}
		return nil, err
	}
	if r.session == nil {
		r.session = func(ctx context.Context, _ string) context.Context { return ctx }
	}
	if r.step == nil {
		r.step = func(ctx context.Context, i int, req *benchpb.StepRequest) (*benchpb.StepReply, error) {
			return benchpb.Step(ctx, r.conns[i%len(r.conns)], req)
		}
	}
	return r, nil
}

// serve serves the Sessions service with keep on a new loopback port, with
// opts, and registers its closing on r.
func serve(r *running, keep keeper, withReflection bool, opts ...grpc.ServerOption) (string, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := grpc.NewServer(opts...)
	benchpb.RegisterSessionsServer(srv, sessions{keep: keep})
	if withReflection {
		reflection.Register(srv)
	}
	go srv.Serve(countedListener{lis, &r.serverWire})
	r.onClose(srv.Stop)
	return lis.Addr().String(), nil
}

// dial connects to addr in plaintext (loopback only) with opts.
func dial(r *running, addr string, opts ...grpc.DialOption) error {
	conn, err := grpc.NewClient(addr, append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(countedDial(&r.callerWire)))...)
	if err != nil {
		return err
	}
	r.conns = append(r.conns, conn)
	return nil
}

// newSealer returns a sealer with a fresh ephemeral key.
func newSealer() (*scone.Sealer, error) {
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		return nil, err
	}
	return scone.NewSealer(ring, scone.WithTTL(time.Hour))
}

// fail closes r and returns err, for the start functions.
func fail(r *running, err error) (*running, error) {
	r.close()
	return nil, err
}

func startPlain(context.Context) (*running, error) {
	r := &running{}
	addr, err := serve(r, stateless{}, false)
	if err != nil {
		return fail(r, err)
	}
	if err := dial(r, addr); err != nil {
		return fail(r, err)
	}
	return r, nil
}

func startMap(context.Context) (*running, error) {
	r := &running{}
	addr, err := serve(r, newMapKeeper(), false)
	if err != nil {
		return fail(r, err)
	}
	if err := dial(r, addr); err != nil {
		return fail(r, err)
	}
	return r, nil
}

type holderKey struct{}

// clientHolders gives each session its own holder: a session is a client.
var clientHolders = sconegrpc.DialOptions(sconegrpc.WithHolderFromContext(func(ctx context.Context) scone.Holder {
	h, _ := ctx.Value(holderKey{}).(scone.Holder)
	return h
}))

func holderSession(ctx context.Context, _ string) context.Context {
	return context.WithValue(ctx, holderKey{}, scone.Holder(scone.NewDict()))
}

// startSconeServer serves the Sessions service with the SCONE hook.
func startSconeServer(r *running, withReflection bool) (string, error) {
	sealer, err := newSealer()
	if err != nil {
		return "", err
	}
	return serve(r, sconeKeeper{}, withReflection, sconegrpc.ServerOptions(sealer)...)
}

func startClient(context.Context) (*running, error) {
	r := &running{session: holderSession}
	addr, err := startSconeServer(r, false)
	if err != nil {
		return fail(r, err)
	}
	if err := dial(r, addr, clientHolders...); err != nil {
		return fail(r, err)
	}
	return r, nil
}
