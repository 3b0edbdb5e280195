package cluster

import "slices"

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
	var buf [16]scored // no allocation for clusters of up to 16 members
	s := buf[:0]
	for _, m := range members {
		h := fnv64a(fnv64a(fnv64a(fnvOffset, m), "\x00"), key)
		s = append(s, scored{m, mix(h)})
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

// FNV-1a, 64 bits (as hash/fnv's New64a, without its allocation).
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnv64a continues the FNV-1a hash h over s.
func fnv64a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
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
