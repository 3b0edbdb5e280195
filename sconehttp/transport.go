package sconehttp

import (
	"net/http"
	"strings"
	"sync"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
)

// Transport is an http.RoundTripper that holds SCONEs for its client: it
// attaches to each request the SCONEs whose scope matches the request's
// path (in the Scone header), and keeps what the response brings, as a
// whole or not at all (with a scone.Dict; another Holder takes them one by
// one).
// Requests to one host take turns (WithConcurrentCalls, WithCallGroup), and
// a request whose response's SCONEs cannot be kept fails with their error
// (its scone.Code is reachable through errors.As, see scone.CodeOf).
//
// Used by a handler with its request's context, a Transport works for that
// request instead: a front end's calls to its back ends carry their SCONEs,
// and what comes back goes to the front end's client.
type Transport struct {
	base  http.RoundTripper
	cfg   clientConfig
	turns hook.Turns[turnKey]

	mu    sync.Mutex
	hosts map[string]*scone.Dict
}

type turnKey struct {
	h     scone.Holder
	group string
}

// NewTransport returns a Transport sending requests through base (nil:
// http.DefaultTransport).
func NewTransport(base http.RoundTripper, opts ...ClientOption) *Transport {
	if base == nil {
		base = http.DefaultTransport
	}
	t := &Transport{base: base, cfg: clientConfig{group: func(r *http.Request) string { return r.URL.Host }}}
	for _, o := range opts {
		o.applyClient(&t.cfg)
	}
	return t
}

// Holder returns the holder of a host's SCONEs (with no WithHolder or
// WithHolderFromContext option: a scone.Dict per host), creating it.
func (t *Transport) Holder(host string) scone.Holder {
	if t.cfg.holder != nil {
		return t.cfg.holder
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.hosts == nil {
		t.hosts = make(map[string]*scone.Dict)
	}
	d := t.hosts[host]
	if d == nil {
		d = scone.NewDict()
		t.hosts[host] = d
	}
	return d
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	carry, inRequest := hook.CarryFrom(ctx)
	if inRequest && carry.Plain() {
		return t.base.RoundTrip(req) // for a client without a hook: no state
	}
	var holder scone.Holder
	switch {
	case inRequest:
	case t.cfg.holderFrom != nil:
		if holder = t.cfg.holderFrom(ctx); holder == nil {
			return nil, scone.NewError(scone.CodeInternal, "no holder for this request's context")
		}
	default:
		holder = t.Holder(req.URL.Host)
	}

	if !t.cfg.concurrent {
		var release func()
		var err error
		if inRequest {
			release, err = carry.Take(ctx, t.cfg.group(req))
		} else {
			release, err = t.turns.Take(ctx, turnKey{holder, t.cfg.group(req)})
		}
		if err != nil {
			return nil, err
		}
		defer release() // the state is final once the response's headers are in
	}

	var sent [][]byte
	if inRequest {
		sent = carry.Attach(nil, req.URL.Host)
	} else {
		sent = holder.Match(nil, req.URL.Path)
	}
	texts := make([]string, len(sent))
	for i, tok := range sent {
		texts[i] = scone.EncodeText(tok)
	}
	out := req.Clone(ctx)
	out.Header.Set(HeaderSCONE, strings.Join(texts, ", "))
	if inRequest {
		out.Header.Set(HeaderScope, carry.Scope())
	}
	resp, err := t.base.RoundTrip(out)
	if err != nil {
		return nil, err
	}
	reply, err := replyFromHeaders(resp.Header)
	if err == nil && !reply.Empty() {
		if inRequest {
			err = carry.Apply(req.URL.Host, reply.Dropped, reply.SCONEs)
		} else {
			err = hook.ApplyReply(holder, &reply, sent)
		}
	}
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	return resp, nil
}
