package cli

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/scone-project/scone/internal/liveview"
)

// Warning marks an error of a ready function that does not keep the daemon
// from serving: /healthz answers 200 with "ok" and a "warning: " line.
type Warning struct{ Err error }

// Error returns the warning's text.
func (w Warning) Error() string { return w.Err.Error() }

// Unwrap returns the error warned about.
func (w Warning) Unwrap() error { return w.Err }

// ServeAdmin serves a daemon's /metrics (Prometheus: the daemon's own
// registry and more, plus Go and process metrics), /healthz and the live
// view /debug/scone/ on addr until ctx is done. ready reports whether the
// daemon can serve (for /healthz: a Warning leaves it ready); view gives
// what the live view shows.
func ServeAdmin(ctx context.Context, addr string, reg *prometheus.Registry, ready func() error, view func() liveview.Snapshot, log *slog.Logger, more ...prometheus.Gatherer) (net.Addr, error) {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gather := append(prometheus.Gatherers{reg}, more...)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		var warn Warning
		switch err := ready(); {
		case errors.As(err, &warn):
			w.Write([]byte("ok\nwarning: " + warn.Error() + "\n"))
			return
		case err != nil:
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	})
	liveview.Mount(mux, "/debug/scone/", view)
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin server", "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	return lis.Addr(), nil
}
