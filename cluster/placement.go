package cluster

import (
	"hash/fnv"
	"slices"
)

// Owners returns the k members that keep the SCONEs of key, by rendezvous
// (highest random weight) hashing: each member's weight is a hash of the
// member and the key, and the k heaviest own it, the first of them the
// primary. When a member leaves, only the keys it owned move (each to one
// other member); when one joins, only the keys it now wins move to it.
// Fewer than k members give them all.
func Owners(key string, members []string, k int) []string {
	type scored struct {
		name  string
		score uint64
	}
	s := make([]scored, len(members))
	for i, m := range members {
		h := fnv.New64a()
		h.Write([]byte(m))
		h.Write([]byte{0})
		h.Write([]byte(key))
		s[i] = scored{m, mix(h.Sum64())}
	}
	slices.SortFunc(s, func(a, b scored) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		case a.name < b.name:
			return -1
		case a.name > b.name:
			return 1
		}
		return 0
	})
	out := make([]string, 0, min(k, len(s)))
	for _, x := range s[:min(k, len(s))] {
		out = append(out, x.name)
	}
	return out
}

// mix finishes a hash (the splitmix64 finaliser), so that FNV's weak low
// bits still spread the weights evenly.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}
