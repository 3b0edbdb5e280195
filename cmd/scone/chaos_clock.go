package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"time"
)

// chaosClockEnv names the environment variable that makes a process's
// clock skewable at run time, for "scone chaos" only: set to an address
// (127.0.0.1:PORT), the process serves "PUT /skew?d=DURATION" there, and
// every time its SCONE code reads (sealing, expiry, cluster records) is off
// by that duration from then on. Unset, which is every normal run, the
// process reads time.Now and listens on nothing more.
const chaosClockEnv = "SCONE_CHAOS_CLOCK"

// skewClock is time.Now plus an offset that can change at run time.
type skewClock struct{ off atomic.Int64 }

func (c *skewClock) now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// chaosClock returns the clock a process reads: time.Now, or, when
// chaosClockEnv is set, a skewClock served on its address.
func chaosClock(log *slog.Logger) (func() time.Time, error) {
	addr := os.Getenv(chaosClockEnv)
	if addr == "" {
		return time.Now, nil
	}
	if host, _, err := net.SplitHostPort(addr); err != nil || !net.ParseIP(host).IsLoopback() {
		return nil, errors.New(chaosClockEnv + " must be a loopback address (127.0.0.1:PORT)")
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &skewClock{}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /skew", func(w http.ResponseWriter, r *http.Request) {
		d, err := time.ParseDuration(r.URL.Query().Get("d"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.off.Store(int64(d))
		log.Warn("chaos: clock skewed", "skew", d)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(lis)
	log.Warn("chaos: clock skewable", "addr", lis.Addr().String())
	return c.now, nil
}
