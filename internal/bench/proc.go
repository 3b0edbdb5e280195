package bench

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/scone-project/scone/internal/freeport"
)

// A daemon is an external server the bench starts (redis-server, nginx) in
// its own process group, killed with the bench: Pdeathsig if this process
// dies, the whole group when the contender closes.
type daemon struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  string // its output
}

// startDaemon runs path with args in dir, its output to dir/output.log.
func startDaemon(dir, path string, args ...string) (*daemon, error) {
	d := &daemon{cmd: exec.Command(path, args...), done: make(chan struct{}), log: filepath.Join(dir, "output.log")}
	out, err := os.Create(d.log)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own copy
	d.cmd.Dir = dir
	d.cmd.Stdout, d.cmd.Stderr = out, out
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", filepath.Base(path), err)
	}
	go func() {
		d.cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// output returns the end of the daemon's output, for error messages.
func (d *daemon) output() string {
	b, _ := os.ReadFile(d.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// exited reports whether the daemon has ended.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// stop ends the daemon's process group: SIGTERM, then SIGKILL after 5 s.
func (d *daemon) stop() {
	pgid := d.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-d.done
	}
	// Workers may outlive their master by a moment.
	syscall.Kill(-pgid, syscall.SIGKILL)
}

// pids returns the daemon's process and its children (nginx's workers).
func (d *daemon) pids() []int {
	root := d.cmd.Process.Pid
	out := []int{root}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == root {
			continue
		}
		if f, err := procStat(pid); err == nil && len(f) > 1 && f[1] == strconv.Itoa(root) {
			out = append(out, pid)
		}
	}
	return out
}

// procStat returns the fields of /proc/pid/stat after the command name.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// clockTick is the unit of utime and stime in /proc/pid/stat (USER_HZ,
// 100 on every Linux the bench targets).
const clockTick = 10 * time.Millisecond

// cpuOf returns the user and system CPU time pid has used, 0 if it is gone.
func cpuOf(pid int) time.Duration {
	f, err := procStat(pid)
	if err != nil || len(f) < 13 {
		return 0
	}
	// Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name.
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+s) * clockTick
}

// selfCPU returns this process's user and system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// freePort returns a loopback port that was free a moment ago, for daemons
// that must be told their port (internal/freeport).
func freePort() (int, error) {
	addr, err := freeport.Addr()
	if err != nil {
		return 0, err
	}
	_, port, _ := net.SplitHostPort(addr)
	return strconv.Atoi(port)
}

// waitPort waits until something accepts connections on addr, or d exits,
// or the timeout passes.
func waitPort(d *daemon, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if d.exited() {
			return fmt.Errorf("%s exited: %s", filepath.Base(d.cmd.Path), d.output())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen on %s within %v", filepath.Base(d.cmd.Path), addr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// lookBinary finds a daemon's binary in PATH or the sbin directories
// (nginx lives in /usr/sbin, often not in a user's PATH); pkg is the
// Debian package to suggest when it is missing.
func lookBinary(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &SkipError{Reason: fmt.Sprintf("%s not found; install it with: apt-get install %s", name, pkg)}
}
