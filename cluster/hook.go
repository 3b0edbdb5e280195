package cluster

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/internal/hookmetrics"
	"github.com/scone-project/scone/internal/hooktrace"
	"github.com/scone-project/scone/internal/membership"
	"github.com/scone-project/scone/sconegrpc"
)

// UnaryServerInterceptor returns the server hook of cluster mode for unary
// calls: the client's SCONEs live in the cluster, not with the client. For
// each call from a named client it fetches the client's record from its
// owners, restores the state into the context (hook.Exchange: handlers
// are the same as in every mode), runs the handler, and, if the state
// changed, writes the new record to the k owners before the reply leaves.
//
// The call fails, and nothing changes, with Unavailable when fewer than k
// members are live (unless Config.Degrade), the record cannot be read, or
// the write reached fewer than k owners and every owner it may have reached
// confirmed taking it back; with Aborted (code conflict) when another
// request changed the client's state first, so the client may retry. When
// an owner that may hold a failed write does not confirm taking it back
// (it did not answer: the write may be held up in the network, and land
// later), the call fails with DeadlineExceeded (code in_doubt): the outcome
// is unknown, as when a server dies mid-call, and the next read shows it.
// A call whose client goes away (cancels it, or its deadline passes) while
// its new state is written is not cut short: the write ends as the owners
// answer, so a read the client makes at once never sees a change that is
// then taken back; a call whose client went away before the write changes
// nothing. Calls that name no client run without state.
//
// The hook records the scone_hook_* metrics, with the transport label
// "cluster", in the node's registry (Metrics).
func (n *Node) UnaryServerInterceptor(s *scone.Sealer) grpc.UnaryServerInterceptor {
	m, tr := n.hookMetrics(), hooktrace.New(n.cfg.TracerProvider)
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		var resp any
		err := n.serve(ctx, s, m, tr, info.FullMethod, func(ctx context.Context) error {
			var err error
			resp, err = handler(ctx, req)
			return err
		})
		return resp, err
	}
}

// StreamServerInterceptor is UnaryServerInterceptor for streaming calls:
// the state is restored before the handler and written after it returns.
func (n *Node) StreamServerInterceptor(s *scone.Sealer) grpc.StreamServerInterceptor {
	m, tr := n.hookMetrics(), hooktrace.New(n.cfg.TracerProvider)
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		return n.serve(ss.Context(), s, m, tr, info.FullMethod, func(ctx context.Context) error {
			return handler(srv, &serverStream{ss, ctx})
		})
	}
}

// ServerOptions returns the grpc.ServerOptions that install the cluster
// hook on a server.
func (n *Node) ServerOptions(s *scone.Sealer) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(n.UnaryServerInterceptor(s)),
		grpc.ChainStreamInterceptor(n.StreamServerInterceptor(s)),
	}
}

// CopiesHeader is the reply header by which a node in degrade mode says a
// client's new state is on fewer nodes than its service asks for, as
// "copies/k" (e.g. "1/2").
const CopiesHeader = "scone-copies"

// hookMetrics returns the recorder of the hook metrics in the node's
// registry. The interceptors each call it: the second reuses the
// collectors of the first.
func (n *Node) hookMetrics() *hookmetrics.Metrics {
	m, err := hookmetrics.New(n.reg, hookmetrics.Cluster)
	if err != nil {
		// The node's own registry holds only scone_cluster_* metrics.
		panic("cluster: " + err.Error())
	}
	return m
}

type serverStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *serverStream) Context() context.Context { return s.ctx }

// serve runs one call with its client's state kept in the cluster, and
// counts it in m.
func (n *Node) serve(ctx context.Context, s *scone.Sealer, m *hookmetrics.Metrics, tr *hooktrace.Tracer, method string, run func(context.Context) error) error {
	q := request{
		service:  sconegrpc.ServiceName(method),
		scope:    sconegrpc.DefaultScope(method),
		target:   method,
		identify: func() (string, error) { return n.cfg.Identity(ctx) },
		run:      run,
		degraded: func(copies string) { grpc.SetHeader(ctx, metadata.Pairs(CopiesHeader, copies)) },
	}
	herr, err := n.serveState(ctx, s, m, tr, q)
	if err != nil {
		m.Failed(q.service, err)
		return sconegrpc.Status(err).Err()
	}
	return herr
}

// request is one request the cluster hook serves, whatever its transport.
type request struct {
	service  string                      // the service serving it
	scope    string                      // the scope its SCONEs are sealed with
	target   string                      // what the held SCONEs' scopes must match
	identify func() (string, error)      // names the client (Config.Identity)
	run      func(context.Context) error // the handler: an error keeps no change
	degraded func(copies string)         // says, as "copies/k", that the state is on fewer than k owners
}

// serveState serves q with its client's state kept in the cluster, and
// returns the handler's error apart from the hook's own (a scone error,
// which the transport turns into its status).
func (n *Node) serveState(ctx context.Context, s *scone.Sealer, m *hookmetrics.Metrics, tr *hooktrace.Tracer, q request) (herr, err error) {
	service, scope, run := q.service, q.scope, q.run
	client, err := q.identify()
	if err != nil {
		return nil, err
	}
	if client == "" {
		x, err := m.Begin(ctx, s, hook.Incoming{Expect: scone.Expect{Service: service}, Scope: scope, Plain: true})
		if err != nil {
			return nil, err
		}
		herr := run(x.Context())
		m.Served(x, true, nil)
		return herr, nil
	}
	key := KeyOf(client)
	k := n.cfg.k(service)
	// One view for the whole request: its owners are read and written in
	// it, and refuse if they see another (see pending.view).
	view := n.members.View()
	owners := Owners(key, view.Members, k)
	if len(owners) < k && (!n.cfg.Degrade || len(owners) == 0) {
		return nil, scone.NewError(scone.CodeUnavailable,
			fmt.Sprintf("%d live members, fewer than the %d copies this service needs", len(owners), k))
	}
	gen := n.changes.Load()
	span := tr.Start(ctx, hooktrace.ClusterRd)
	rec, err := n.read(ctx, key, k, owners, view)
	span.End(err, hooktrace.Holders.Int(len(owners)))
	if err != nil {
		return nil, err
	}
	if rec != nil && rec.Copies > k {
		// The client's record also holds the state of a service that asks
		// for more copies: it keeps them.
		k = rec.Copies
		owners = Owners(key, view.Members, k)
		if len(owners) < k && (!n.cfg.Degrade || len(owners) == 0) {
			return nil, scone.NewError(scone.CodeUnavailable,
				fmt.Sprintf("%d live members, fewer than the %d copies this client's state needs", len(owners), k))
		}
		if rec, err = n.read(ctx, key, k, owners, view); err != nil {
			return nil, err
		}
	}
	var held [][]byte
	var base uint64
	if rec != nil {
		held, base = rec.SCONEs, rec.RV
	}
	var sent [][]byte
	now := n.cfg.Now()
	for _, tok := range held {
		if h, err := hook.Peek(tok); err == nil && now.Before(h.Expires) && scone.ScopeMatches(string(h.Scope), q.target) {
			sent = append(sent, tok)
		}
	}
	span = tr.Start(ctx, hooktrace.Restore)
	x, err := m.Begin(ctx, s, hook.Incoming{SCONEs: sent, Expect: scone.Expect{Service: service, Client: client}, Scope: scope,
		Endpoint: n.cfg.Name, Operation: q.target})
	span.Restored(service, sent, x, false, err)
	if err != nil {
		return nil, err
	}
	herr = run(x.Context())
	st := x.State()
	readOnly := !hook.Changed(st) && !hook.Dropped(st) && st.Expires().Sub(now) > hook.TTL(s)/2
	span = tr.Start(x.Context(), hooktrace.Commit)
	reply, err := m.Finish(x, nil, herr != nil)
	span.Committed(service, &reply, err)
	if err != nil {
		return nil, err
	}
	own := func(tok []byte) bool {
		h, err := hook.Peek(tok)
		return err == nil && string(h.Service) == service && string(h.Scope) == scope
	}
	if readOnly && len(reply.Dropped) == 0 && !slices.ContainsFunc(reply.SCONEs, func(tok []byte) bool { return !own(tok) }) {
		// The re-seal of an unchanged SCONE gives a client fresh bytes so
		// its requests cannot be linked; here no client sees them, and a
		// read need not cost a write. Not when back ends sent SCONEs too:
		// the re-sealed SCONE bundles theirs (internal/hook), and keeping
		// the old one beside their new ones would break the bundle.
		reply.SCONEs = nil
	}
	if reply.Empty() {
		m.Served(x, false, nil)
		return herr, nil
	}
	d := scone.NewDict(scone.WithDictClock(n.cfg.Now))
	for _, tok := range held {
		d.Put(tok)
	}
	if err := hook.ApplyReply(d, &reply, sent); err != nil {
		return nil, err
	}
	next := &Record{Key: key, RV: base + 1, Stamp: now.UnixNano(), SCONEs: d.Tokens(), Copies: k}
	need := k
	if n.cfg.Degrade {
		need = 1
	}
	wctx, span := tr.StartContext(ctx, hooktrace.ClusterWr)
	copies, err := n.write(wctx, next, base, owners, need, view.Hash)
	span.End(err, hooktrace.Holders.Int(len(owners)), hooktrace.Copies.Int(copies), hooktrace.Count.Int(len(next.SCONEs)))
	if err != nil {
		return nil, err
	}
	if copies == len(owners) && len(owners) == k {
		n.store.commit(next, gen, time.Now().UnixNano())
	}
	if copies < k {
		q.degraded(fmt.Sprintf("%d/%d", copies, k))
	}
	m.Served(x, false, &reply)
	return herr, nil
}

// read returns key's record for k copies, owned by owners in view: the
// node's own copy if it can vouch for it (see trusted), else the newest of
// the owners', or of every member's within the settle window after a
// change of the view (see readFrom).
func (n *Node) read(ctx context.Context, key string, k int, owners []string, view *membership.View) (*Record, error) {
	if rec, ok := n.trusted(key, owners); ok {
		n.m.fetchBy[fetchLocal].Inc()
		return rec, nil
	}
	now := time.Now() // the monotonic clock, as the change's time
	from := readFrom(key, k, view.Members, n.changedAt(view.Hash, now), now, n.settleWindow())
	return n.fetch(ctx, key, from, view.Hash)
}
