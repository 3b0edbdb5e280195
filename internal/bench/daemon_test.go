package bench

import (
	"errors"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestDaemons runs the contenders that start external servers when those
// are installed (redis-server, nginx; CI has neither and skips them): every
// call must keep its state, their CPU must count, and closing must leave no
// process behind.
func TestDaemons(t *testing.T) {
	for _, c := range Contenders() {
		if c.Name != Redis && c.Name != Nginx {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			r, err := startContender(t.Context(), c)
			var skip *SkipError
			if errors.As(err, &skip) {
				t.Skip(skip.Reason)
			}
			if err != nil {
				t.Fatal(err)
			}
			pids := r.pids()
			if c.Name == Nginx && len(pids) < 2 {
				t.Errorf("nginx pids %v: want the master and its workers", pids)
			}
			cfg := Config{Callers: 8, MaxCalls: 400, SessionCalls: 5, Seed: 1}
			run := measure(t.Context(), &cfg, c, r, 1024, 1, time.Minute, new(sequence).ptr())
			r.close()
			if run.Calls != 400 || run.Errors != 0 || run.Wrong != 0 {
				t.Errorf("%d calls, %d errors, %d wrong (%s)", run.Calls, run.Errors, run.Wrong, run.FirstError)
			}
			if run.CPU <= 0 {
				t.Errorf("CPU %v", run.CPU)
			}
			for _, pid := range pids {
				if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
					t.Errorf("process %d of %s still runs after close", pid, c.Name)
				}
			}
		})
	}
}
