package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// redisKeeper is the session-store design: every call reads the session's
// state from Redis and writes it back (GET + SET).
type redisKeeper struct {
	rdb *redis.Client
}

func (k redisKeeper) step(ctx context.Context, session string, size int) (uint64, error) {
	key := "scone-bench:" + session
	d, err := k.rdb.Get(ctx, key).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, status.Errorf(codes.Unavailable, "redis GET: %v", err)
	}
	d, n := advance(d, size)
	if err := k.rdb.Set(ctx, key, d, 0).Err(); err != nil {
		return 0, status.Errorf(codes.Unavailable, "redis SET: %v", err)
	}
	return n, nil
}

// startRedis starts a redis-server on a loopback port, in memory only (no
// snapshots, no append-only file), and the Sessions service in front of it.
func startRedis(ctx context.Context) (*running, error) {
	bin, err := lookBinary("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	r := &running{}
	dir, err := os.MkdirTemp("", "scone-bench-redis-")
	if err != nil {
		return nil, err
	}
	r.onClose(func() { os.RemoveAll(dir) })
	port, err := freePort()
	if err != nil {
		return fail(r, err)
	}
	d, err := startDaemon(dir, bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir, "--logfile", "")
	if err != nil {
		return fail(r, err)
	}
	r.onClose(d.stop)
	r.pids = d.pids
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	if err := waitPort(d, addr, 10*time.Second); err != nil {
		return fail(r, err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr, PoolSize: 128, MinIdleConns: 64, DisableIdentity: true})
	r.onClose(func() { rdb.Close() })
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		return fail(r, fmt.Errorf("redis-server on %s: %w", addr, err))
	}
	r.extMemory = func(ctx context.Context) (int64, error) { return redisUsedMemory(ctx, rdb) }
	srv, err := serve(r, redisKeeper{rdb: rdb}, false)
	if err != nil {
		return fail(r, err)
	}
	if err := dial(r, srv); err != nil {
		return fail(r, err)
	}
	return r, nil
}

// redisUsedMemory returns the memory redis-server's keys and values take
// (used_memory_dataset: used_memory without the server's overhead and the
// clients' buffers, which swing with load).
func redisUsedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory_dataset:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("redis INFO memory has no used_memory_dataset")
}
