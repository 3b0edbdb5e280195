package main

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

// chaosClockEnv names the environment variable that lets scone chaos
// inject faults into a process at run time, and nothing else does: set to
// an address (127.0.0.1:PORT), the process serves there
//
//   - "PUT /skew?d=DURATION": every time its SCONE code reads (sealing,
//     expiry, cluster records) is off by that duration from then on;
//   - "PUT /gossip-block?addrs=HOST:PORT,...", in a process that gossips
//     (scone node, scone relay --circulate): its gossip to and from those
//     members' gossip addresses is dropped from then on (none: healed).
//
// Unset, which is every normal run, the process reads time.Now, gossips
// on memberlist's own transport, and listens on nothing more.
const chaosClockEnv = "SCONE_CHAOS_CLOCK"

// chaosControl is what scone chaos can change in a running process; nil
// when chaosClockEnv is not set.
type chaosControl struct {
	skew   atomic.Int64
	gossip atomic.Pointer[gossip.BlockingTransport]
	log    *slog.Logger
}

// startChaosControl serves the chaos control endpoint when chaosClockEnv
// is set, and returns nil otherwise.
func startChaosControl(log *slog.Logger) (*chaosControl, error) {
	addr := os.Getenv(chaosClockEnv)
	if addr == "" {
		return nil, nil
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
		return nil, errors.New(chaosClockEnv + " must be a loopback address (127.0.0.1:PORT)")
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &chaosControl{log: log}
	srv := &http.Server{Handler: c.handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(lis)
	log.Warn("chaos: faults injectable", "addr", lis.Addr().String())
	return c, nil
}

// handler serves PUT /skew and PUT /gossip-block (see chaosClockEnv).
func (c *chaosControl) handler() http.Handler {
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

// now returns the process's clock: time.Now, plus the skew under chaos.
func (c *chaosControl) now() func() time.Time {
	if c == nil {
		return time.Now
	}
	return func() time.Time { return time.Now().Add(time.Duration(c.skew.Load())) }
}

// memberlist returns the memberlist configuration of a member gossiping on
// addr: nil (the member's default) without chaos, and under chaos
// cluster.LANConfig on a transport that PUT /gossip-block can cut off.
func (c *chaosControl) memberlist(addr string) (*memberlist.Config, error) {
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
