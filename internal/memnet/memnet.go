// Package memnet is an in-memory network for tests of memberlist groups:
// memberlist transports and gRPC listeners in one process, with members
// that can be cut off (a partition, or a paused process as the others see
// it) and healed. Fast, and free of the timing of real sockets.
package memnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
	"google.golang.org/grpc/test/bufconn"
)

// Net is an in-memory network: memberlist transports and gRPC listeners,
// with members that can be cut off and healed. Its zero value is not
// usable; call New.
type Net struct {
	mu        sync.Mutex
	gossip    map[string]*memTransport // by gossip address
	addrOf    map[string]string        // node name → gossip address
	listeners map[string]*bufconn.Listener
	ownerOf   map[string]string // listener address → node name
	cut       map[string]bool
	conns     []memConn
	port      int
}

type memConn struct {
	a, b string
	c    net.Conn
}

// New returns an empty network.
func New() *Net {
	return &Net{
		gossip:    map[string]*memTransport{},
		addrOf:    map[string]string{},
		listeners: map[string]*bufconn.Listener{},
		ownerOf:   map[string]string{},
		cut:       map[string]bool{},
	}
}

// Transport returns a fresh memberlist transport for a member, at the same
// address as before if the member was on the network already.
func (n *Net) Transport(name string) memberlist.NodeAwareTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	addr, ok := n.addrOf[name]
	if !ok {
		n.port++
		addr = "127.0.0.1:" + strconv.Itoa(n.port)
		n.addrOf[name] = addr
	}
	t := &memTransport{
		net: n, name: name, addr: addr,
		packets: make(chan *memberlist.Packet, 1024),
		streams: make(chan net.Conn, 64),
	}
	n.gossip[addr] = t
	return t
}

// AddrOf returns the gossip address of a member that has had a Transport.
func (n *Net) AddrOf(name string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.addrOf[name]
}

// Listen returns a fresh listener for a member's service at addr.
func (n *Net) Listen(name, addr string) net.Listener {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := bufconn.Listen(1 << 20)
	n.listeners[addr] = l
	n.ownerOf[addr] = name
	return l
}

// Dialer returns the dial function of member from. The member named
// "client" reaches every member, cut off or not.
func (n *Net) Dialer(from string) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		n.mu.Lock()
		l, to := n.listeners[addr], n.ownerOf[addr]
		// A cut isolates nodes from each other; clients reach every node.
		blocked := from != "client" && (n.cut[from] || n.cut[to])
		n.mu.Unlock()
		if l == nil || blocked {
			return nil, fmt.Errorf("memnet: no route from %s to %s", from, addr)
		}
		c, err := l.DialContext(ctx)
		if err != nil {
			return nil, err
		}
		n.track(from, to, c)
		return c, nil
	}
}

func (n *Net) track(a, b string, c net.Conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.conns = append(n.conns, memConn{a, b, c})
}

// Isolate cuts a member off from every other: its packets are dropped, its
// connections closed, and new ones refused.
func (n *Net) Isolate(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[name] = true
	kept := n.conns[:0]
	for _, c := range n.conns {
		if c.a != "client" && (c.a == name || c.b == name) {
			c.c.Close()
			continue
		}
		kept = append(kept, c)
	}
	n.conns = kept
}

// Heal reconnects a member cut off by Isolate.
func (n *Net) Heal(name string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.cut, name)
}

// route returns the transport a packet or stream from a node to addr goes
// to, or nil if it is dropped.
func (n *Net) route(from string, a memberlist.Address) *memTransport {
	n.mu.Lock()
	defer n.mu.Unlock()
	t := n.gossip[a.Addr]
	if t == nil || t.closed || n.cut[from] || n.cut[t.name] {
		return nil
	}
	return t
}

// memTransport is a memberlist.NodeAwareTransport on a memNet.
type memTransport struct {
	net     *Net
	name    string
	addr    string
	packets chan *memberlist.Packet
	streams chan net.Conn
	closed  bool // guarded by net.mu
}

var _ memberlist.NodeAwareTransport = (*memTransport)(nil)

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

func (t *memTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	host, port, _ := net.SplitHostPort(t.addr)
	p, err := strconv.Atoi(port)
	return net.ParseIP(host), p, err
}

func (t *memTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *memTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	dest := t.net.route(t.name, a)
	if dest == nil {
		return now, nil // lost, as UDP would lose it
	}
	select {
	case dest.packets <- &memberlist.Packet{Buf: bytes.Clone(b), From: memAddr(t.addr), Timestamp: now}:
	default:
	}
	return now, nil
}

func (t *memTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *memTransport) IngestPacket(conn net.Conn, addr net.Addr, now time.Time, shouldClose bool) error {
	if shouldClose {
		defer conn.Close()
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if len(b) == 0 {
		return errors.New("memnet: empty packet")
	}
	t.packets <- &memberlist.Packet{Buf: b, From: addr, Timestamp: now}
	return nil
}

func (t *memTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *memTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	dest := t.net.route(t.name, a)
	if dest == nil {
		return nil, fmt.Errorf("memnet: no route from %s to %s", t.name, a.Addr)
	}
	p1, p2 := net.Pipe()
	t.net.track(t.name, dest.name, p1)
	t.net.track(dest.name, t.name, p2)
	select {
	case dest.streams <- p1:
		return p2, nil
	case <-time.After(timeout):
		p1.Close()
		p2.Close()
		return nil, fmt.Errorf("memnet: dial %s timed out", a.Addr)
	}
}

func (t *memTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *memTransport) IngestStream(conn net.Conn) error {
	t.streams <- conn
	return nil
}

func (t *memTransport) Shutdown() error {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	t.closed = true
	return nil
}
