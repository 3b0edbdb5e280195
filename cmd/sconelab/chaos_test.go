package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// buildBins builds the binaries sconelab chaos runs (with the sconechaos
// tag and tags) into a temporary folder, and returns it.
func buildBins(t *testing.T, tags ...string) string {
	t.Helper()
	dir := t.TempDir()
	if _, err := buildLabBins(dir, tags...); err != nil {
		t.Fatal(err)
	}
	return dir
}

var chaosLine = regexp.MustCompile(`(?m)\Achaos: mode=(\S+) ops=(\d+) faults=(\d+) unknown=(\d+) violations=(\d+) seed=(\d+)\z`)

// runChaosProcess runs "sconelab chaos" from the binaries in bins and
// returns its output, the numbers of its last line, and its exit error.
func runChaosProcess(t *testing.T, bins string, args ...string) (string, map[string]int, error) {
	t.Helper()
	cmd := exec.Command(binsIn(bins).lab, append([]string{"chaos", "--quiet", "--bin=" + bins}, args...)...)
	cmd.Dir = t.TempDir()
	// If the test binary dies (a timeout), the chaos process dies with it,
	// and its own processes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.Output()
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	m := chaosLine.FindStringSubmatch(lines[len(lines)-1])
	if m == nil {
		stderr := ""
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("last line is not the chaos summary:\n%s\n%s", out, stderr)
	}
	n := map[string]int{}
	for i, k := range []string{"ops", "faults", "unknown", "violations", "seed"} {
		n[k], _ = strconv.Atoi(m[i+2])
	}
	return string(out), n, err
}

// TestChaos runs sconelab chaos briefly in every mode: real processes, faults
// from a fixed seed, and every history checked. Each run takes about 20 s.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	bins := buildBins(t)
	for _, run := range []struct {
		name, mode, transport string
		extra                 []string
	}{
		{"client", "client", "grpc", nil}, {"relay", "relay", "grpc", nil}, {"cluster", "cluster", "grpc", nil},
		{"circulate", "circulate", "grpc", nil}, {"cluster-http", "cluster", "http", nil},
		// Each version spent once: replays refused, lost replies given back.
		{"client-marks", "client", "grpc", []string{"--marks"}},
	} {
		t.Run(run.name, func(t *testing.T) {
			args := append([]string{"--mode=" + run.mode, "--transport=" + run.transport, "--duration=15s", "--fault-every=1500ms", "--seed=1", "--out=" + t.TempDir()}, run.extra...)
			out, n, err := runChaosProcess(t, bins, args...)
			if err != nil || n["violations"] != 0 {
				t.Fatalf("sconelab chaos --mode=%s --transport=%s: %v\n%s", run.mode, run.transport, err, out)
			}
			// At least one fault: how many of the schedule's fit depends on
			// how fast the machine is, which a test must not.
			if n["ops"] < 100 || n["faults"] < 1 || n["seed"] != 1 {
				t.Fatalf("too little happened: %v\n%s", n, out)
			}
		})
	}
	// A history the checker could not search in time is not a pass.
	t.Run("unchecked", func(t *testing.T) {
		out, n, err := runChaosProcess(t, bins, "--mode=client", "--duration=2s", "--seed=1", "--check-timeout=1ns", "--out="+t.TempDir())
		if err == nil || n["violations"] != 0 || !strings.Contains(out, "NOT CHECKED") {
			t.Fatalf("a run whose histories were not checked: %v, %v\n%s", err, n, out)
		}
	})
}

// TestChaosCatchesBrokenBuild builds the chaos binaries with the
// chaosbroken tag, whose cart servers skip sealing every tenth update while
// replying as if they had, and checks that sconelab chaos reports the lost updates, exits
// non-zero, and leaves porcupine's view and the logs.
func TestChaosCatchesBrokenBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	bins := buildBins(t, "chaosbroken")
	outDir := filepath.Join(t.TempDir(), "evidence")
	out, n, err := runChaosProcess(t, bins, "--mode=client", "--duration=6s", "--seed=1", "--out="+outDir)
	if err == nil || n["violations"] == 0 || !strings.Contains(out, "not linearizable") {
		t.Fatalf("the broken build passed: %v\n%s", err, out)
	}
	views, _ := filepath.Glob(filepath.Join(outDir, "session-*.html"))
	logs, _ := filepath.Glob(filepath.Join(outDir, "logs", "cart-*.log"))
	if len(views) == 0 || len(logs) == 0 {
		t.Fatalf("evidence: views %v, logs %v", views, logs)
	}
	if b, _ := os.ReadFile(logs[0]); !strings.Contains(string(b), "BROKEN BUILD") {
		t.Fatalf("%s does not say the build is broken:\n%s", logs[0], b)
	}
}
