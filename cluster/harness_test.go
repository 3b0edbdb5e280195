package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/memnet"
)

// counter is the test service: Add appends an operation to the client's
// state and returns the state; Get returns it. Its handlers are plain SCONE
// handlers, unaware of the cluster.
type counter struct {
	// gate, if set, runs in Add before the state changes (to hold a call).
	gate func(op string)
	// served, if set, runs once the node has served a call, its state
	// written or not.
	served func(method string)
}

func (c *counter) add(ctx context.Context, op string) (string, error) {
	if c.gate != nil {
		c.gate(op)
	}
	st, ok := scone.FromContext(ctx)
	if !ok {
		return "", fmt.Errorf("no state in context")
	}
	st.Update(func(d []byte) []byte { return append(d, op+","...) })
	return string(st.Data()), nil
}

// set replaces the state with value, and returns the state it replaced.
func (c *counter) set(ctx context.Context, value string) (string, error) {
	st, ok := scone.FromContext(ctx)
	if !ok {
		return "", fmt.Errorf("no state in context")
	}
	old := st.Data()
	st.SetData([]byte(value))
	return string(old), nil
}

func (c *counter) get(ctx context.Context) (string, error) {
	st, ok := scone.FromContext(ctx)
	if !ok {
		return "", fmt.Errorf("no state in context")
	}
	return string(st.Data()), nil
}

func counterMethod(service, name string, call func(*counter, context.Context, string) (string, error)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (any, error) {
			req := new(wrapperspb.StringValue)
			if err := dec(req); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, req any) (any, error) {
				out, err := call(srv.(*counter), ctx, req.(*wrapperspb.StringValue).GetValue())
				if err != nil {
					return nil, err
				}
				return wrapperspb.String(out), nil
			}
			if in == nil {
				return h(ctx, req)
			}
			return in(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + service + "/" + name}, h)
		},
	}
}

// counterService describes the counter service under a name.
func counterService(name string) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: name,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			counterMethod(name, "Add", (*counter).add),
			counterMethod(name, "Get", func(c *counter, ctx context.Context, _ string) (string, error) { return c.get(ctx) }),
			counterMethod(name, "Set", (*counter).set),
		},
	}
}

var counterDesc = counterService("sconetest.Counter")

// testCluster is a cluster of Nodes on a memnet.Net, each serving the counter
// service to clients.
type testCluster struct {
	t      testing.TB
	net    *memnet.Net
	sealer *scone.Sealer
	tune   func(*Config)

	mu    sync.Mutex
	nodes map[string]*testNode
	order []string
	conns map[string]*grpc.ClientConn
}

type testNode struct {
	node *Node
	svc  *grpc.Server
	ctr  *counter
}

// newTestCluster starts n nodes with k copies, tuned by tune if not nil.
func newTestCluster(t testing.TB, n, k int, tune func(*Config)) *testCluster {
	c := &testCluster{
		t: t, net: memnet.New(), sealer: testSealer(t),
		nodes: map[string]*testNode{}, conns: map[string]*grpc.ClientConn{},
		tune: func(cfg *Config) {
			cfg.K = k
			if tune != nil {
				tune(cfg)
			}
		},
	}
	t.Cleanup(c.close)
	for i := range n {
		c.start(fmt.Sprintf("node-%d", i))
	}
	c.waitMembers(n)
	return c
}

// start starts (or restarts) the node name, joining the live nodes.
func (c *testCluster) start(name string) *testNode {
	c.t.Helper()
	cfg := DefaultConfig()
	cfg.Name = name
	cfg.PeerAddr = "peer-" + name
	cfg.IdentityHeader = "scone-client" // clients name themselves, as behind an authenticating proxy
	cfg.Dial = c.net.Dialer(name)
	cfg.Timeout = 500 * time.Millisecond
	cfg.Memberlist = LANConfig()
	cfg.Memberlist.Transport = c.net.Transport(name)
	c.mu.Lock()
	for _, other := range c.order {
		if c.nodes[other] != nil {
			cfg.Seeds = append(cfg.Seeds, c.net.AddrOf(other))
		}
	}
	c.mu.Unlock()
	c.tune(&cfg)
	n, err := New(cfg)
	if err != nil {
		c.t.Fatalf("starting %s: %v", name, err)
	}
	tn := &testNode{node: n, ctr: &counter{}}
	after := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if f := tn.ctr.served; f != nil {
			f(info.FullMethod)
		}
		return resp, err
	}
	// after runs around the cluster's hook: it sees the call end once the
	// state is written.
	tn.svc = grpc.NewServer(append([]grpc.ServerOption{grpc.ChainUnaryInterceptor(after)}, n.ServerOptions(c.sealer)...)...)
	tn.svc.RegisterService(counterDesc, tn.ctr)
	tn.svc.RegisterService(counterService("sconetest.Other"), tn.ctr)
	// The node is listed as live before it serves its Peer service: no
	// record reaches it before then (a memnet dial waits for the accept).
	// Listed after, a record handed over to it, and dropped by the node
	// that owned it before, would be on a node that copies does not count
	// yet (TestClusterRepairRestoresK once saw "1 copies during the join"
	// from this, under load).
	c.mu.Lock()
	if _, ok := c.nodes[name]; !ok {
		c.order = append(c.order, name)
	}
	c.nodes[name] = tn
	c.mu.Unlock()
	go n.ServePeer(c.net.Listen(name, cfg.PeerAddr))
	go tn.svc.Serve(c.net.Listen(name, "svc-"+name))
	return tn
}

// kill stops a node at once, its records lost.
func (c *testCluster) kill(name string) {
	c.mu.Lock()
	tn := c.nodes[name]
	c.nodes[name] = nil
	c.mu.Unlock()
	tn.svc.Stop()
	tn.node.Close()
}

func (c *testCluster) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.conns {
		conn.Close()
	}
	for _, tn := range c.nodes {
		if tn != nil {
			tn.svc.Stop()
			tn.node.Close()
		}
	}
}

// live returns the names of the nodes running, in start order.
func (c *testCluster) live() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, name := range c.order {
		if c.nodes[name] != nil {
			out = append(out, name)
		}
	}
	return out
}

func (c *testCluster) node(name string) *testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[name]
}

// waitMembers waits until every live node sees want members.
func (c *testCluster) waitMembers(want int) {
	c.t.Helper()
	c.eventually(20*time.Second, func() error {
		for _, name := range c.live() {
			if got := len(c.node(name).node.Members()); got != want {
				return fmt.Errorf("%s sees %d members, want %d", name, got, want)
			}
		}
		return nil
	})
}

// eventually retries f every 20 ms until it succeeds or d passes.
func (c *testCluster) eventually(d time.Duration, f func() error) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// call calls a counter method on a node as client ("Add", or with its
// service "sconetest.Other/Add").
func (c *testCluster) call(node, client, method, op string) (string, metadata.MD, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return c.callContext(ctx, node, client, method, op)
}

// callContext is call, within ctx.
func (c *testCluster) callContext(ctx context.Context, node, client, method, op string) (string, metadata.MD, error) {
	c.mu.Lock()
	conn := c.conns[node]
	if conn == nil {
		var err error
		conn, err = grpc.NewClient("passthrough:///svc-"+node,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithContextDialer(c.net.Dialer("client")))
		if err != nil {
			c.mu.Unlock()
			return "", nil, err
		}
		c.conns[node] = conn
	}
	c.mu.Unlock()
	if client != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "scone-client", client)
	}
	var header metadata.MD
	out := new(wrapperspb.StringValue)
	if !strings.Contains(method, "/") {
		method = "sconetest.Counter/" + method
	}
	err := conn.Invoke(ctx, "/"+method, wrapperspb.String(op), out, grpc.Header(&header))
	return out.GetValue(), header, err
}

// session is one client's history: the operations acknowledged, and those
// whose outcome is unknown (the call failed).
type session struct {
	client string
	acked  []string
	maybe  map[string]bool
	next   int
}

func newSession(client string) *session {
	return &session{client: client, maybe: map[string]bool{}}
}

// step adds one operation through node, and checks the state it returns.
// It reports whether the call succeeded.
func (s *session) step(t testing.TB, c *testCluster, node string) bool {
	t.Helper()
	op := fmt.Sprintf("%s.%d", s.client, s.next)
	s.next++
	out, _, err := c.call(node, s.client, "Add", op)
	if err != nil {
		s.maybe[op] = true
		return false
	}
	s.acked = append(s.acked, op)
	s.check(t, out)
	return true
}

// check fails t unless state holds every acknowledged operation, in order,
// and nothing that was never sent.
func (s *session) check(t testing.TB, state string) {
	t.Helper()
	ops := strings.Split(strings.TrimSuffix(state, ","), ",")
	i := 0
	for _, op := range ops {
		if op == "" {
			continue
		}
		switch {
		case i < len(s.acked) && op == s.acked[i]:
			i++
		case s.maybe[op]:
		default:
			t.Fatalf("client %s: state %q holds %q, neither acknowledged next (%d acknowledged) nor unknown", s.client, state, op, i)
		}
	}
	if i != len(s.acked) {
		t.Fatalf("client %s: acknowledged operation %q lost; state %q", s.client, s.acked[i], state)
	}
}

// stepUntil retries one operation on the live nodes in turn until one
// acknowledges it, for at most d, and returns how long it took.
func (s *session) stepUntil(t testing.TB, c *testCluster, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for i := 0; ; i++ {
		live := c.live()
		if s.step(t, c, live[(s.next+i)%len(live)]) {
			return time.Since(start)
		}
		if time.Since(start) > d {
			t.Fatalf("client %s: no node acknowledged an operation within %v", s.client, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// verify reads every session's state through a live node and checks it.
func (c *testCluster) verify(t testing.TB, sessions []*session) {
	t.Helper()
	for i, s := range sessions {
		live := c.live()
		var state string
		c.eventually(5*time.Second, func() error {
			var err error
			state, _, err = c.call(live[i%len(live)], s.client, "Get", "")
			return err
		})
		s.check(t, state)
	}
}

// copies counts the live nodes that hold a record for client.
func (c *testCluster) copies(client string) int {
	n := 0
	for _, name := range c.live() {
		if c.node(name).node.Holds(headerKey(client)) {
			n++
		}
	}
	return n
}

// ownerOf returns a live node that owns client's record, as the cluster
// sees it now.
func (c *testCluster) ownerOf(client string, k int) string {
	return Owners(headerKey(client), c.live(), k)[0]
}

// headerKey is the record key of a client named by the scone-client
// header.
func headerKey(client string) string { return KeyOf("header:" + client) }
