package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/scone-project/scone/internal/freeport"
)

// chaosProc is one process that "sconelab chaos" runs, kills, pauses and
// restarts: one of the labBins with a subcommand. It runs in its own
// process group, and dies with the chaos process (Pdeathsig) if that one
// is killed before it cleans up.
type chaosProc struct {
	name    string
	bin     string
	args    func() []string // evaluated at every start (a node joins the others)
	env     []string
	logPath string
	ready   func() error // nil once the process serves

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	paused bool
	starts int
}

// start starts the process and waits (20 s at most) until it is ready.
func (p *chaosProc) start() error {
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		return errors.New(p.name + " is running")
	}
	log, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.mu.Unlock()
		return err
	}
	p.starts++
	fmt.Fprintf(log, "=== chaos: start %d of %s at %s\n", p.starts, p.name, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args()...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		p.mu.Unlock()
		return fmt.Errorf("%s: %w", p.name, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		log.Close()
		close(exited)
	}()
	p.cmd, p.exited, p.paused = cmd, exited, false
	p.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := p.ready()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			p.reap()
			return fmt.Errorf("%s exited at start (see %s)", p.name, p.logPath)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready in 20 s: %v (see %s)", p.name, err, p.logPath)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reap forgets a process that exited by itself.
func (p *chaosProc) reap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cmd = nil
}

// up reports whether the process runs (paused or not).
func (p *chaosProc) up() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		p.cmd = nil
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to the process group and waits for the exit.
func (p *chaosProc) kill() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
	}
}

// pause sends SIGSTOP (true) or SIGCONT (false) to the process group.
func (p *chaosProc) pause(stop bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	sig := syscall.SIGCONT
	if stop {
		sig = syscall.SIGSTOP
	}
	syscall.Kill(-p.cmd.Process.Pid, sig)
	p.paused = stop
}

// reloadsKeys reports whether the process reads the run's key file, and
// so reloads it on SIGHUP (a process without that handler would die of it).
func (p *chaosProc) reloadsKeys() bool {
	for _, a := range p.args() {
		if strings.HasPrefix(a, "--keys=") {
			return true
		}
	}
	return false
}

// hup sends SIGHUP to the process: reload the key file. A paused process
// gets it when it wakes up.
func (p *chaosProc) hup() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return
	}
	select {
	case <-p.exited: // its PID may be another process's by now
	default:
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGHUP)
	}
}

// dialReady is a ready check: addr accepts TCP connections.
func dialReady(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
}

// httpReady is a ready check: url answers 200.
func httpReady(url string) func() error {
	return func() error {
		c := http.Client{Timeout: time.Second}
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
}

// freeAddr returns a loopback address whose port was free a moment ago, for
// TCP and UDP, outside the range of outgoing connections' ports
// (internal/freeport).
func freeAddr() (string, error) { return freeport.Addr() }
