package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestAddr: the address is on loopback, below the ephemeral range, and free
// for TCP and UDP.
func TestAddr(t *testing.T) {
	seen := map[string]bool{}
	for range 20 {
		addr, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host != "127.0.0.1" {
			t.Fatalf("%q: %v", addr, err)
		}
		if p, _ := strconv.Atoi(port); p < low || p >= high {
			t.Fatalf("port %d outside [%d, %d)", p, low, high)
		}
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("TCP %s: %v", addr, err)
		}
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			t.Fatalf("UDP %s: %v", addr, err)
		}
		lis.Close()
		pc.Close()
		seen[addr] = true
	}
	if len(seen) < 10 {
		t.Fatalf("20 picks gave %d addresses: not random", len(seen))
	}
}
