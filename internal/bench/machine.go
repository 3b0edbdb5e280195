package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes the machine a bench runs on: CPU, cores, memory,
// kernel, Go, and the versions of the external servers found.
func Machine() string {
	var parts []string
	cpu := field("/proc/cpuinfo", "model name")
	if cpu == "" {
		cpu = runtime.GOARCH
	}
	parts = append(parts, fmt.Sprintf("%s, %d CPUs (GOMAXPROCS %d)", cpu, runtime.NumCPU(), runtime.GOMAXPROCS(0)))
	if mem, ok := strings.CutSuffix(field("/proc/meminfo", "MemTotal"), " kB"); ok {
		if kb, err := strconv.ParseFloat(mem, 64); err == nil {
			parts = append(parts, fmt.Sprintf("%.0f GiB of memory", kb/(1<<20)))
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		parts = append(parts, runtime.GOOS+" "+strings.TrimSpace(string(b)))
	}
	parts = append(parts, runtime.Version())
	if p, err := lookBinary("redis-server", "redis-server"); err == nil {
		if out, err := exec.Command(p, "--version").Output(); err == nil {
			v := strings.Fields(string(out))
			if len(v) >= 3 {
				parts = append(parts, "redis-server "+strings.TrimPrefix(v[2], "v="))
			}
		}
	}
	if p, err := lookBinary("nginx", "nginx"); err == nil {
		if out, err := exec.Command(p, "-v").CombinedOutput(); err == nil {
			parts = append(parts, strings.TrimPrefix(strings.TrimSpace(string(out)), "nginx version: "))
		}
	}
	return strings.Join(parts, "; ")
}

// field returns the value of the first "name: value" line of file.
func field(file, name string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == name {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return ""
}
