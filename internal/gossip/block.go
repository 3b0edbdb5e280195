package gossip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// A BlockingTransport is a memberlist transport that can cut a member off
// from chosen peers, as a network partition would: set as
// memberlist.Config.Transport, it is memberlist's own NetTransport (UDP
// packets, TCP streams) except that, while an address is blocked, packets
// to it are dropped, packets from it are dropped on arrival, streams to it
// fail to dial, and streams from it are closed on arrival. Streams open
// when a block starts finish as they would have (memberlist closes each
// within its TCPTimeout).
//
// Peers are named by the address they gossip on (host:port, as in
// memberlist.Node.Address). Packets carry it as their source; streams come
// from other ports, so each stream a BlockingTransport dials starts with a
// header naming its dialer, which the accepting BlockingTransport reads and
// strips. Every member of a group must therefore use a BlockingTransport,
// or none. It is meant for fault injection (scone chaos), not for
// production.
type BlockingTransport struct {
	net  *memberlist.NetTransport
	self string // the address this member gossips on, as its streams name it

	blocked atomic.Pointer[map[netip.AddrPort]bool]
	packets chan *memberlist.Packet
	streams chan net.Conn

	ctx      context.Context // done once shutting down
	cancel   context.CancelFunc
	netDown  chan struct{} // closed once net is shut down
	wg       sync.WaitGroup
	shutdown sync.Once
	err      error
}

var _ memberlist.NodeAwareTransport = (*BlockingTransport)(nil)

// streamHeader starts every stream a BlockingTransport dials, followed by
// one byte of length and the dialer's gossip address. Its value is none of
// the first bytes memberlist writes on a stream (message types below 16,
// and its label header, 244).
const streamHeader = 0xb5

// headerTimeout bounds the wait for a stream's header.
const headerTimeout = 5 * time.Second

// NewBlockingTransport listens for gossip on addr, an IP address and port
// (port 0 picks a free one), with nothing blocked. logger receives
// memberlist's transport errors.
func NewBlockingTransport(addr string, logger *log.Logger) (*BlockingTransport, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("gossip address %q: %v", addr, err)
	}
	if ap.Addr().IsUnspecified() {
		return nil, fmt.Errorf("gossip address %q: must name one IP address, which the peers know this member by", addr)
	}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{ap.Addr().String()}, BindPort: int(ap.Port()), Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	self := netip.AddrPortFrom(ap.Addr().Unmap(), uint16(nt.GetAutoBindPort())).String()
	if len(self) > 255 {
		nt.Shutdown()
		return nil, fmt.Errorf("gossip address %q too long", self)
	}
	t := &BlockingTransport{
		net: nt, self: self,
		packets: make(chan *memberlist.Packet),
		streams: make(chan net.Conn),
		netDown: make(chan struct{}),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.blocked.Store(&map[netip.AddrPort]bool{})
	t.wg.Add(2)
	go t.forwardPackets()
	go t.forwardStreams()
	return t, nil
}

// Addr returns the address the transport gossips on.
func (t *BlockingTransport) Addr() string { return t.self }

// Block cuts the member off from the peers gossiping at addrs (host:port,
// IP addresses), and from no others: each call replaces the last, and an
// empty list heals. An address that does not parse is an error, and
// changes nothing. It is safe to call while memberlist runs.
func (t *BlockingTransport) Block(addrs []string) error {
	m := make(map[netip.AddrPort]bool, len(addrs))
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return fmt.Errorf("gossip address %q: %v", a, err)
		}
		m[unmap(ap)] = true
	}
	t.blocked.Store(&m)
	return nil
}

// Blocked returns the addresses blocked, sorted.
func (t *BlockingTransport) Blocked() []string {
	var out []string
	for ap := range *t.blocked.Load() {
		out = append(out, ap.String())
	}
	slices.Sort(out)
	return out
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// isBlocked reports whether addr (host:port) is blocked; a name that is
// not an IP address never is.
func (t *BlockingTransport) isBlocked(addr string) bool {
	ap, err := netip.ParseAddrPort(addr)
	return err == nil && (*t.blocked.Load())[unmap(ap)]
}

// FinalAdvertiseAddr is NetTransport's: see memberlist.Transport.
func (t *BlockingTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.net.FinalAdvertiseAddr(ip, port)
}

// WriteTo sends a packet to addr, or drops it if addr is blocked: see
// memberlist.Transport.
func (t *BlockingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends a packet to a.Addr, or drops it if a.Addr is
// blocked: see memberlist.NodeAwareTransport.
func (t *BlockingTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.isBlocked(a.Addr) {
		return time.Now(), nil // lost on the way, as far as the sender can tell
	}
	return t.net.WriteToAddress(b, a)
}

// PacketCh returns the packets received from addresses not blocked: see
// memberlist.Transport.
func (t *BlockingTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

// DialTimeout connects to addr, unless it is blocked: see
// memberlist.Transport.
func (t *BlockingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout connects to a.Addr, unless it is blocked, and names
// this member in the stream's header: see memberlist.NodeAwareTransport.
func (t *BlockingTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.isBlocked(a.Addr) {
		return nil, fmt.Errorf("dial %s: gossip blocked", a.Addr)
	}
	c, err := t.net.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	hdr := append([]byte{streamHeader, byte(len(t.self))}, t.self...)
	if timeout > 0 {
		c.SetWriteDeadline(time.Now().Add(timeout))
	}
	if _, err := c.Write(hdr); err != nil {
		c.Close()
		return nil, err
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}

// StreamCh returns the streams accepted from addresses not blocked, their
// header read: see memberlist.Transport.
func (t *BlockingTransport) StreamCh() <-chan net.Conn { return t.streams }

// Shutdown closes the listeners and waits for the transport's goroutines:
// see memberlist.Transport. Packets and streams that arrive meanwhile are
// dropped.
func (t *BlockingTransport) Shutdown() error {
	t.shutdown.Do(func() {
		t.cancel()
		// NetTransport's listeners block until their packet or stream is
		// taken: the forwarders keep taking (and dropping) them until it
		// has shut down.
		t.err = t.net.Shutdown()
		close(t.netDown)
		t.wg.Wait()
	})
	return t.err
}

// forwardPackets passes on the packets from addresses not blocked.
func (t *BlockingTransport) forwardPackets() {
	defer t.wg.Done()
	for {
		select {
		case p := <-t.net.PacketCh():
			if p.From != nil && t.isBlocked(p.From.String()) {
				continue
			}
			select {
			case t.packets <- p:
			case <-t.ctx.Done():
			}
		case <-t.netDown:
			return
		}
	}
}

// forwardStreams admits each stream accepted, each in its own goroutine
// so that a slow header holds up no other stream.
func (t *BlockingTransport) forwardStreams() {
	defer t.wg.Done()
	for {
		select {
		case c := <-t.net.StreamCh():
			t.wg.Add(1)
			go t.admit(c)
		case <-t.netDown:
			return
		}
	}
}

// admit reads a stream's header and passes the stream on, unless its
// dialer is blocked, the header is missing, or the transport is shutting
// down.
func (t *BlockingTransport) admit(c net.Conn) {
	defer t.wg.Done()
	// Shutdown ends the wait for the header.
	stop := context.AfterFunc(t.ctx, func() { c.SetReadDeadline(time.Now()) })
	c.SetReadDeadline(time.Now().Add(headerTimeout))
	from, err := readHeader(c)
	stop()
	if err != nil || t.isBlocked(from) || t.ctx.Err() != nil {
		c.Close()
		return
	}
	c.SetReadDeadline(time.Time{})
	select {
	case t.streams <- c:
	case <-t.ctx.Done():
		c.Close()
	}
}

// readHeader reads the header of a stream and returns the dialer's address.
func readHeader(r io.Reader) (string, error) {
	var b [256]byte
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return "", err
	}
	if b[0] != streamHeader {
		return "", errors.New("a gossip stream without a BlockingTransport header")
	}
	n := int(b[1])
	if _, err := io.ReadFull(r, b[:n]); err != nil {
		return "", err
	}
	return string(b[:n]), nil
}
