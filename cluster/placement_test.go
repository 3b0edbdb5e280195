package cluster

import (
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"testing"
)

func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%d", i)
	}
	return out
}

func TestOwnersDeterministic(t *testing.T) {
	m := names(4)
	rev := slices.Clone(m)
	slices.Reverse(rev)
	for i := range 100 {
		key := KeyOf(fmt.Sprint("client-", i))
		a, b := Owners(key, m, 2), Owners(key, rev, 2)
		if !slices.Equal(a, b) {
			t.Fatalf("owners of %s depend on member order: %v vs %v", key, a, b)
		}
		if len(a) != 2 || a[0] == a[1] {
			t.Fatalf("owners of %s: %v, want 2 distinct", key, a)
		}
	}
}

func TestOwnersFewerMembersThanK(t *testing.T) {
	got := Owners("k", names(2), 3)
	if len(got) != 2 {
		t.Fatalf("Owners with 2 members, k=3: %v, want both", got)
	}
	if got := Owners("k", nil, 2); len(got) != 0 {
		t.Fatalf("Owners with no members: %v", got)
	}
}

func TestOwnersSpread(t *testing.T) {
	m := names(4)
	count := map[string]int{}
	const keys = 8000
	for i := range keys {
		for _, o := range Owners(KeyOf(fmt.Sprint(i)), m, 2) {
			count[o]++
		}
	}
	// Each member owns about half of the keys (2 of 4); allow 10%.
	for _, name := range m {
		if c := count[name]; c < keys/2*9/10 || c > keys/2*11/10 {
			t.Errorf("%s owns %d of %d keys, want about %d", name, c, keys, keys/2)
		}
	}
}

// TestOwnersMinimalMovement checks rendezvous hashing's promise: when a
// member leaves, a key keeps every surviving owner; when one joins, a key
// changes owners only to take in the new member.
func TestOwnersMinimalMovement(t *testing.T) {
	m := names(5)
	gone := m[2]
	rest := slices.DeleteFunc(slices.Clone(m), func(s string) bool { return s == gone })
	for i := range 2000 {
		key := KeyOf(fmt.Sprint(i))
		before, after := Owners(key, m, 2), Owners(key, rest, 2)
		for _, o := range before {
			if o != gone && !slices.Contains(after, o) {
				t.Fatalf("key %s: owner %s lost its key when %s left (%v → %v)", key, o, gone, before, after)
			}
		}
		// Joining is the same change in reverse.
		for _, o := range before {
			if !slices.Contains(after, o) && o != gone {
				t.Fatalf("key %s moved to a member other than the new one", key)
			}
		}
	}
}

// TestFNV64a pins the inlined FNV-1a to hash/fnv's: the owners of every
// record depend on it, on every node, of every version.
func TestFNV64a(t *testing.T) {
	for _, in := range []string{"", "a", "node-0\x00" + KeyOf("client-1"), strings.Repeat("xyz", 50)} {
		h := fnv.New64a()
		h.Write([]byte(in))
		if got, want := fnv64a(fnvOffset, in), h.Sum64(); got != want {
			t.Errorf("fnv64a(%q) = %x, want %x", in, got, want)
		}
	}
}
