package cluster

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/grpcframe"
)

// holdNet holds back the bytes one node sends another while a link is
// held, as a partition that the TCP connection outlives does, and lets them
// through, in order, when it is released.
type holdNet struct {
	mu    sync.Mutex
	held  map[[2]string]bool // from, to
	conns []*holdConn
}

type holdConn struct {
	net.Conn
	h        *holdNet
	from, to string
	mu       sync.Mutex
	buf      []byte
}

// dialer wraps the dial function of node from.
func (h *holdNet) dialer(from string, dial func(context.Context, string) (net.Conn, error)) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		hc := &holdConn{Conn: c, h: h, from: from, to: addr}
		h.mu.Lock()
		h.conns = append(h.conns, hc)
		h.mu.Unlock()
		return hc, nil
	}
}

func (h *holdNet) hold(from, toAddr string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held[[2]string{from, toAddr}] = true
}

// release lets every held byte through and holds nothing more.
func (h *holdNet) release() {
	h.mu.Lock()
	clear(h.held)
	conns := slices.Clone(h.conns)
	h.mu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		if len(c.buf) > 0 {
			c.Conn.Write(c.buf)
			c.buf = nil
		}
		c.mu.Unlock()
	}
}

func (c *holdConn) Write(b []byte) (int, error) {
	c.h.mu.Lock()
	held := c.h.held[[2]string{c.from, c.to}]
	c.h.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if held || len(c.buf) > 0 {
		c.buf = append(c.buf, b...)
		if !held {
			_, err := c.Conn.Write(c.buf)
			c.buf = nil
			return len(b), err
		}
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// TestWriteHeldInDoubt: a write whose primary owner gets it only after the
// writer gave up (the request was held up in the network, and so was the
// undo that followed it) may still take effect, so the call must not
// promise that nothing changed: it fails with CodeInDoubt (gRPC
// DeadlineExceeded), never CodeUnavailable. After the heal, the client's
// state holds every acknowledged change, and the in-doubt one or not.
func TestWriteHeldInDoubt(t *testing.T) {
	h := &holdNet{held: map[[2]string]bool{}}
	c := newTestCluster(t, 3, 2, func(cfg *Config) {
		cfg.Dial = h.dialer(cfg.Name, cfg.Dial)
	})
	const client = "held-client"
	primary := c.ownerOf(client, 2)
	var writer string
	for _, n := range c.live() {
		if n != primary {
			writer = n
			break
		}
	}
	s := newSession(client)
	s.stepUntil(t, c, 5*time.Second)

	// The next Add has read the state; from then on, hold what the writer
	// sends the primary: the write, then the undo that follows it.
	const op = "held-client.1"
	c.node(writer).ctr.gate = func(got string) {
		if got == op {
			h.hold(writer, "peer-"+primary)
		}
	}
	_, _, err := c.call(writer, client, "Add", op)
	c.node(writer).ctr.gate = nil
	s.maybe[op] = true
	if got := grpcframe.StatusCode(err); got != scone.CodeInDoubt || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a write held from its primary failed with %v (gRPC %v): %v; want in_doubt (DeadlineExceeded)", got, status.Code(err), err)
	}
	h.release()
	c.verify(t, []*session{s})
	s.next = 2
	s.stepUntil(t, c, 5*time.Second)
	c.verify(t, []*session{s})
}
