package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// nginxConf is the configuration of the bench's nginx: its own prefix
// directory (pid file, logs, temporary files), never the system's; one
// worker per CPU; HTTP/2 in plaintext on loopback, grpc_pass to one
// upstream with kept-alive connections.
const nginxConf = `daemon off;
master_process on;
worker_processes %d;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	upstream sessions {
		server %[3]s;
		keepalive 64;
	}
	server {
		listen 127.0.0.1:%[4]d http2;
		http2_max_concurrent_streams 1024;
		location / {
			grpc_pass grpc://sessions;
			grpc_read_timeout 60s;
		}
	}
}
`

// startNginx serves the Sessions service with the SCONE hook behind an
// nginx grpc_pass proxy; the clients hold their SCONEs (client mode through
// a plain proxy), the anchor a relay is compared with.
func startNginx(ctx context.Context) (*running, error) {
	bin, err := lookBinary("nginx", "nginx")
	if err != nil {
		return nil, err
	}
	r := &running{session: holderSession}
	dir, err := os.MkdirTemp("", "scone-bench-nginx-")
	if err != nil {
		return nil, err
	}
	r.onClose(func() { os.RemoveAll(dir) })
	upstream, err := startSconeServer(r, false)
	if err != nil {
		return fail(r, err)
	}
	var d *daemon
	var addr string
	// The port is chosen before nginx binds it: try again if another
	// process took it meanwhile.
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return fail(r, err)
		}
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, fmt.Appendf(nil, nginxConf, runtime.GOMAXPROCS(0), dir, upstream, port), 0o644); err != nil {
			return fail(r, err)
		}
		if d, err = startDaemon(dir, bin, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log")); err != nil {
			return fail(r, err)
		}
		addr = fmt.Sprintf("127.0.0.1:%d", port)
		err = waitPort(d, addr, 10*time.Second)
		if err == nil {
			break
		}
		d.stop()
		if attempt == 2 {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return fail(r, fmt.Errorf("%w\n%s", err, b))
		}
	}
	r.onClose(d.stop)
	r.pids = d.pids
	if err := dial(r, addr, clientHolders...); err != nil {
		return fail(r, err)
	}
	return r, nil
}
