//go:build sconechaos

package chaosctl

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/scone-project/scone/cluster"
	"github.com/scone-project/scone/internal/gossip"
)

// Enabled reports whether this build has the fault hooks: true, as it was
// built with the sconechaos tag.
const Enabled = true

// Control is what sconelab chaos can change in a running process; nil
// when Env is not set.
type Control struct {
	skew   atomic.Int64
	gossip atomic.Pointer[gossip.BlockingTransport]
	log    *slog.Logger
}

// Start serves the fault control endpoint when Env is set, and returns nil
// otherwise.
func Start(log *slog.Logger) (*Control, error) {
	addr := os.Getenv(Env)
	if addr == "" {
		return nil, nil
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
		return nil, errors.New(Env + " must be a loopback address (127.0.0.1:PORT)")
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &Control{log: log}
	srv := &http.Server{Handler: c.handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(lis)
	log.Warn("chaos: faults injectable", "addr", lis.Addr().String())
	return c, nil
}

// handler serves PUT /skew and PUT /gossip-block (see the package doc).
func (c *Control) handler() http.Handler {
	log := c.log
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /skew", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.skew.Store(int64(d))
		log.Warn("chaos: clock skewed", "skew", d)
	})
	mux.HandleFunc("PUT /gossip-block", func(w http.ResponseWriter, r *http.Request) {
		bt := c.gossip.Load()
		if bt == nil {
			http.Error(w, "this process does not gossip", http.StatusConflict)
			return
		}
		var addrs []string
		for a := range strings.SplitSeq(r.URL.Query().Get("addrs"), ",") {
			if a != "" {
				addrs = append(addrs, a)
			}
		}
		if err := bt.Block(addrs); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		log.Warn("chaos: gossip blocked", "addrs", addrs)
	})
	return mux
}

// Now returns the process's clock: time.Now, plus the skew under chaos.
func (c *Control) Now() func() time.Time {
	if c == nil {
		return time.Now
	}
	return func() time.Time { return time.Now().Add(time.Duration(c.skew.Load())) }
}

// Memberlist returns the memberlist configuration of a member gossiping on
// addr: nil (the member's default) without chaos, and under chaos
// cluster.LANConfig on a transport that PUT /gossip-block can cut off.
func (c *Control) Memberlist(addr string) (*memberlist.Config, error) {
	if c == nil {
		return nil, nil
	}
	bt, err := gossip.NewBlockingTransport(addr, slog.NewLogLogger(c.log.Handler(), slog.LevelDebug))
	if err != nil {
		return nil, err
	}
	c.gossip.Store(bt)
	mc := cluster.LANConfig()
	mc.Transport = bt
	return mc, nil
}
