package relay

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// A relay re-sends a call that an upstream lost before answering, with the
// SCONEs it attached to the first attempt, when the call's method is one it
// may re-send (Config.RetryMethods). It does so through gRPC's retry policy
// on a second connection to the upstreams, used only by those methods:
// gRPC re-sends an attempt that ended Unavailable before any reply header
// reached the relay, to the next upstream the round-robin picks, replaying
// the request messages it buffered, and gives the relay the one answer.
// Nothing of a lost attempt reaches the client, because the relay forwards
// nothing before the upstream's reply header.

// maxRetryAttempts is gRPC's limit on a retry policy's maxAttempts.
const maxRetryAttempts = 5

// validRetryPattern reports whether p names a service ("/pkg.Service/") or
// a method ("/pkg.Service/Method").
func validRetryPattern(p string) bool {
	rest, ok := strings.CutPrefix(p, "/")
	if !ok {
		return false
	}
	service, method, ok := strings.Cut(rest, "/")
	if !ok || !protoreflect.FullName(service).IsValid() {
		return false
	}
	return method == "" || protoreflect.Name(method).IsValid()
}

// retries reports whether a call of method, of kind kd, may be re-sent:
// its proto declares it idempotent or free of side effects, or patterns
// name it or its service.
func retries(method string, kd kind, patterns []string) bool {
	if kd.idempotent() {
		return true
	}
	for _, p := range patterns {
		if method == p || strings.HasSuffix(p, "/") && strings.HasPrefix(method, p) {
			return true
		}
	}
	return false
}

// retryServiceConfig is the service config of the relay's connection for
// the calls it may re-send: round-robin over the upstreams, and a retry
// policy for every method, on Unavailable only.
func retryServiceConfig(attempts int, backoff time.Duration) string {
	return fmt.Sprintf(`{
	"loadBalancingConfig": [{"round_robin": {}}],
	"methodConfig": [{
		"name": [{}],
		"retryPolicy": {
			"maxAttempts": %d,
			"initialBackoff": "%.3fs",
			"maxBackoff": "%.3fs",
			"backoffMultiplier": 2,
			"retryableStatusCodes": ["UNAVAILABLE"]
		}
	}]
}`, attempts, backoff.Seconds(), (backoff << (attempts - 2)).Seconds())
}

// attemptsKey is the context key of a call's attempt counter.
type attemptsKey struct{}

// withAttempts returns ctx with a counter of the attempts gRPC makes of a
// call started with it.
func withAttempts(ctx context.Context) (context.Context, *atomic.Int32) {
	n := new(atomic.Int32)
	return context.WithValue(ctx, attemptsKey{}, n), n
}

// attemptCounter is a stats.Handler that counts the attempts of each call
// into its context's counter: gRPC begins each attempt, the first and every
// re-send, with a stats.Begin.
type attemptCounter struct{}

func (attemptCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (attemptCounter) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.Begin); !ok {
		return
	}
	if n, ok := ctx.Value(attemptsKey{}).(*atomic.Int32); ok {
		n.Add(1)
	}
}

func (attemptCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (attemptCounter) HandleConn(context.Context, stats.ConnStats) {}

// countRetries records the re-sends of a call that ended with code after
// attempts attempts: the last one answered, unless the call still failed
// Unavailable; every earlier one failed before answering.
func (m *metrics) countRetries(attempts int32, code codes.Code) {
	if attempts <= 1 {
		return
	}
	failed := attempts - 2
	if code == codes.Unavailable {
		failed++
	} else {
		m.retries.WithLabelValues("answered").Inc()
	}
	m.retries.WithLabelValues("failed").Add(float64(failed))
}
