package main

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	in := `goos: linux
BenchmarkUnary/state=none-2   	 100	 10000 ns/op	 8 B/op	 1 allocs/op
BenchmarkUnary/state=256-2    	 100	 20000 ns/op
goos: linux
BenchmarkUnary/state=none-2   	 100	 12000 ns/op
BenchmarkUnary/state=256-2    	 100	 16000 ns/op
`
	rounds, order, err := parse(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rounds) != 2 || len(order) != 2 || order[1] != "Unary/state=256" {
		t.Fatalf("rounds %v, order %v", rounds, order)
	}
	if rounds[1]["Unary/state=256"] != 16000 {
		t.Fatalf("round 2: %v", rounds[1])
	}
	if m := median([]float64{0.5, 0.75}); m != 0.625 {
		t.Fatalf("median = %v", m)
	}
}
