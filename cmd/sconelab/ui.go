package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/cluster"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/internal/liveview"
)

// codeCounts counts failed calls by gRPC code, for the web view.
type codeCounts struct {
	mu sync.Mutex
	n  map[string]int64
}

func (c *codeCounts) add(code string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int64{}
	}
	c.n[code]++
}

func (c *codeCounts) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// webView is the demo's live web view: the page, its event stream, and
// the kill and restart buttons.
type webView struct {
	d *demo

	mu       sync.Mutex
	last     map[string]int64 // served counts at the last snapshot
	lastAt   time.Time
	lastCall int64
}

// serveUI serves the demo's web view on addr until ctx is done and returns
// its address.
func (d *demo) serveUI(ctx context.Context, addr string) (net.Addr, error) {
	v := &webView{d: d, last: map[string]int64{}, lastAt: time.Now()}
	mux := http.NewServeMux()
	liveview.Mount(mux, "/", v.snapshot)
	mux.HandleFunc("POST /kill/{name}", v.act(false))
	mux.HandleFunc("POST /restart/{name}", v.act(true))
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(lis)
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	return lis.Addr(), nil
}

// act kills (or restarts) the server, relay or node named in the path.
func (v *webView) act(restart bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		for _, g := range v.d.groups {
			for _, m := range g {
				if m.name != name {
					continue
				}
				v.d.events.Lock()
				defer v.d.events.Unlock()
				if restart {
					switch err := m.restart(); {
					case errors.Is(err, shop.ErrUp):
						http.Error(w, name+" is up", http.StatusConflict)
					case err != nil:
						http.Error(w, err.Error(), http.StatusInternalServerError)
					default:
						v.d.restarts.Add(1)
						v.d.narrate("restart %s (from the web view)", name)
						w.WriteHeader(http.StatusNoContent)
					}
					return
				}
				if !m.up() {
					http.Error(w, name+" is down already", http.StatusConflict)
					return
				}
				m.kill()
				v.d.kills.Add(1)
				v.d.narrate("kill %s (from the web view)", name)
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		http.Error(w, "no server, relay or node named "+name, http.StatusNotFound)
	}
}

// snapshot gathers what the view shows now.
func (v *webView) snapshot() liveview.Snapshot {
	d := v.d
	v.mu.Lock()
	defer v.mu.Unlock()
	now := time.Now()
	dt := now.Sub(v.lastAt).Seconds()
	rate := func(name string, n int64) float64 {
		r := 0.0
		if dt > 0 {
			r = float64(n-v.last[name]) / dt
		}
		v.last[name] = n
		return max(r, 0)
	}
	s := liveview.Snapshot{
		Mode: d.cfg.mode, Elapsed: now.Sub(d.start).Seconds(), Errors: d.errs.snapshot(),
		Kills: d.kills.Load(), Restarts: d.restarts.Load(), Done: d.shopDone.Load(), Actions: true,
	}
	switch {
	case d.cluster != nil:
		s.Where = fmt.Sprintf("on k=%d of the nodes", d.cluster.k)
	case d.relays != nil && d.relays.copies > 0:
		s.Where = fmt.Sprintf("circulating among the relays, %d copies each", d.relays.copies)
	case d.relays != nil:
		s.Where = "in the relays' JetStream bucket"
	default:
		s.Where = "in the clients"
	}
	served := map[string]int64{}
	if d.dep != nil {
		for _, role := range []shop.Role{shop.RoleGateway, shop.RoleCart, shop.RoleInventory} {
			for _, r := range d.dep.Replicas(role) {
				served[r.Name] = r.Served()
			}
		}
	}
	if d.cluster != nil {
		for _, m := range d.cluster.nodes {
			served[m.spec.Name] = m.calls()
		}
	}
	names := []string{"gateway", "cart", "inventory"}
	switch {
	case d.cluster != nil:
		names = []string{"nodes"}
	case d.relays != nil:
		names = append(names, "relays")
	}
	for i, g := range d.groups {
		ug := liveview.Group{Name: names[min(i, len(names)-1)]}
		for _, m := range g {
			um := liveview.Member{Name: m.name, Addr: m.addr, Up: m.up()}
			if n, ok := served[m.name]; ok {
				um.Rate = rate(m.name, n)
			}
			if d.cluster != nil && um.Up {
				if cm := d.cluster.member(m.name); cm != nil {
					if n := cm.get(); n != nil {
						um.Detail = fmt.Sprintf("%d records, sees %d members", n.Cluster().Records(), len(n.Cluster().Members()))
					}
				}
			}
			ug.Members = append(ug.Members, um)
		}
		s.Groups = append(s.Groups, ug)
	}
	for i, ss := range d.sessions {
		calls := ss.calls.Load()
		s.Calls += calls
		s.Lost += ss.lost.Load()
		if i >= liveview.MaxSessions {
			continue
		}
		us := liveview.Session{ID: fmt.Sprintf("#%d", ss.id), Calls: calls, Lost: ss.lost.Load()}
		switch {
		case d.cluster != nil:
			key := cluster.KeyOf(fmt.Sprintf("header:shopper-%d", ss.id)) // named by the scone-client header
			for _, m := range d.cluster.nodes {
				n := m.get()
				if n == nil {
					continue
				}
				if info, ok := n.Cluster().Describe(key); ok {
					us.Holders = append(us.Holders, m.spec.Name)
					us.Bytes, us.SCONEs = info.Bytes, nil
					for _, h := range info.SCONEs {
						us.SCONEs = append(us.SCONEs, liveview.SCONE{Service: h.Service[strings.LastIndexByte(h.Service, '.')+1:], Version: h.Version})
					}
				}
			}
			slices.SortFunc(us.SCONEs, func(a, b liveview.SCONE) int { return strings.Compare(a.Service, b.Service) })
		case d.relays != nil && d.relays.copies > 0:
			us.Holders = d.relays.holders(fmt.Sprintf("shopper-%d", ss.id))
		case d.relays != nil:
			us.Holders = []string{"relay bucket"}
		default:
			us.Holders = []string{"client"}
			for _, tok := range ss.dict.Tokens() {
				us.SCONEs = append(us.SCONEs, d.openForView(tok))
			}
			slices.SortFunc(us.SCONEs, func(a, b liveview.SCONE) int { return strings.Compare(a.Service, b.Service) })
			_, us.Bytes = ss.dict.Len()
		}
		s.Sessions = append(s.Sessions, us)
	}
	if dt > 0 {
		s.Rate = max(float64(s.Calls-v.lastCall)/dt, 0)
	}
	v.lastCall, v.lastAt = s.Calls, now
	return s
}

// openForView describes a SCONE a shopper holds for the web view: its
// service and version from the header, and, opened with the demo's key, the
// endpoint that last served it and that call's status (which a holder
// cannot read: they are sealed).
func (d *demo) openForView(tok []byte) liveview.SCONE {
	h, err := scone.ParseHeader(tok)
	if err != nil {
		return liveview.SCONE{Service: "?"}
	}
	out := liveview.SCONE{Service: h.Service[strings.LastIndexByte(h.Service, '.')+1:], Version: h.Version}
	var sc scone.SCONE
	if d.sealer != nil {
		if _, err := hook.Open(d.sealer, context.Background(), &sc, tok, scone.Expect{Service: h.Service}); err == nil {
			out.Endpoint, out.Status = sc.Endpoint, sc.Status
		}
	}
	return out
}
