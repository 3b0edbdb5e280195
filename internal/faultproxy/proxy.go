// Package faultproxy is a TCP proxy that injects network faults between two
// processes: a partition (no byte crosses, in either direction, until it
// heals; connections stay open, as in a real network partition, and what
// was sent meanwhile arrives after the heal) and added latency (each chunk
// of bytes waits before it is forwarded).
//
// One Proxy stands for one directed link: the client side dials the
// Proxy's address instead of the target's.
package faultproxy

import (
	"net"
	"sync"
	"time"
)

// Proxy forwards the TCP connections it accepts to a target address.
type Proxy struct {
	lis    net.Listener
	target string

	mu      sync.Mutex
	healed  chan struct{} // closed while not partitioned
	latency time.Duration
	conns   map[net.Conn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// Listen starts a Proxy on addr (e.g. "127.0.0.1:0") forwarding to target.
func Listen(addr, target string) (*Proxy, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{lis: lis, target: target, healed: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	close(p.healed)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr returns the address the Proxy listens on.
func (p *Proxy) Addr() string { return p.lis.Addr().String() }

// Target returns the address the Proxy forwards to.
func (p *Proxy) Target() string { return p.target }

// Partition stops every byte from crossing the link, from now on, until
// Heal. New connections are accepted and wait too.
func (p *Proxy) Partition() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.healed:
		p.healed = make(chan struct{})
	default: // already partitioned
	}
}

// Heal lets bytes cross the link again.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.healed:
	default:
		close(p.healed)
	}
}

// SetLatency makes every chunk of bytes wait d before it is forwarded (0:
// none).
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = d
}

// Close stops the Proxy and closes every connection through it.
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.Heal()
	err := p.lis.Close()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			c.Close()
			return
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

// track registers c so Close closes it; false once the Proxy is closed.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.conns, c)
}

// gate waits until the link is healed, then for the latency; false if the
// Proxy closed meanwhile.
func (p *Proxy) gate() bool {
	p.mu.Lock()
	healed, latency := p.healed, p.latency
	p.mu.Unlock()
	<-healed
	if latency > 0 {
		time.Sleep(latency)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed
}

func (p *Proxy) serve(c net.Conn) {
	defer p.wg.Done()
	defer p.untrack(c)
	defer c.Close()
	if !p.gate() {
		return
	}
	up, err := net.DialTimeout("tcp", p.target, 2*time.Second)
	if err != nil {
		return
	}
	if !p.track(up) {
		up.Close()
		return
	}
	defer p.untrack(up)
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { p.pump(up, c); done <- struct{}{} }()
	go func() { p.pump(c, up); done <- struct{}{} }()
	<-done // one side ended: end both
	c.Close()
	up.Close()
	<-done
}

// pump copies src to dst through the gate, chunk by chunk.
func (p *Proxy) pump(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: the caller closes both sides
		}
	}
}
