// Package freeport picks loopback addresses for the daemons that tests and
// the lab start as processes, which must be told their address before they
// bind it.
//
// A port taken from the kernel (listening on port 0) and closed again is in
// the ephemeral range, where the kernel also picks the local ports of
// outgoing connections: on a busy machine one of those may take it before
// the daemon binds it. So Addr picks a port below the ephemeral range, which
// no outgoing connection uses, and checks that it is free for both TCP and
// UDP (memberlist gossips on both).
package freeport

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
)

// low and high bound the ports Addr picks: below Linux's default ephemeral
// range (32768–60999), above the well-known and most registered services.
const low, high = 20000, 32768

// Addr returns "127.0.0.1:PORT" with a port that was free for TCP and UDP
// a moment ago, and is not one the kernel gives outgoing connections.
func Addr() (string, error) {
	for range 200 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(low+rand.IntN(high-low)))
		lis, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		lis.Close()
		if err != nil {
			continue
		}
		pc.Close()
		return addr, nil
	}
	return "", errors.New("freeport: no loopback port free for TCP and UDP")
}
