// Command benchratio reads `go test -bench` output made of several rounds
// (each round a run of every benchmark, started by its "goos:" header) and
// prints, for each benchmark, the per-round ratio of a baseline's ns/op to
// its own: the throughput relative to the baseline, paired within a round so
// that drift on a noisy machine hits both sides alike. It prints the median
// and the range over the rounds.
//
//	go run ./internal/tools/benchratio -base 'Unary/state=none' < bench.txt
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
)

func main() {
	base := flag.String("base", "", "name of the baseline benchmark, without the Benchmark prefix and -N suffix")
	flag.Parse()
	if *base == "" {
		fmt.Fprintln(os.Stderr, "benchratio: -base is required")
		os.Exit(2)
	}
	rounds, order, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchratio:", err)
		os.Exit(1)
	}
	fmt.Printf("%-45s %8s  %s\n", "benchmark", "÷ base", "range (rounds)")
	for _, name := range order {
		var ratios []float64
		for _, r := range rounds {
			b, ok1 := r[*base]
			v, ok2 := r[name]
			if ok1 && ok2 && v > 0 {
				ratios = append(ratios, b/v)
			}
		}
		if len(ratios) == 0 {
			continue
		}
		slices.Sort(ratios)
		fmt.Printf("%-45s %8.3f  %.3f–%.3f (%d)\n", name, median(ratios), ratios[0], ratios[len(ratios)-1], len(ratios))
	}
}

// parse returns the ns/op of each benchmark per round, and the benchmark
// names in first-seen order.
func parse(r io.Reader) ([]map[string]float64, []string, error) {
	var rounds []map[string]float64
	var order []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "goos:") || rounds == nil {
			rounds = append(rounds, map[string]float64{})
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			name = name[:i]
		}
		for i := 2; i+1 < len(f); i++ {
			if f[i+1] == "ns/op" {
				v, err := strconv.ParseFloat(f[i], 64)
				if err != nil {
					return nil, nil, fmt.Errorf("%q: %v", line, err)
				}
				rounds[len(rounds)-1][name] = v
			}
		}
		if !seen[name] {
			seen[name] = true
			order = append(order, name)
		}
	}
	return rounds, order, sc.Err()
}

func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
