package circulate

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/circulate/circulatepb"
)

func TestNewer(t *testing.T) {
	c := func(gen, hop uint64) *item { return &item{gen: gen, hop: hop} }
	for _, tc := range []struct {
		a, b        *item
		newer, same bool
	}{
		{c(2, 0), c(1, 9), true, false}, // a later write beats any hop
		{c(1, 9), c(2, 0), false, false},
		{c(3, 4), c(3, 3), true, false}, // the same write, handed further
		{c(3, 3), c(3, 4), false, false},
		{c(3, 3), c(3, 3), false, true},
		{c(0, 0), nil, true, false},
	} {
		if got := tc.a.newer(tc.b); got != tc.newer {
			t.Errorf("%+v newer than %+v: %v, want %v", tc.a, tc.b, got, tc.newer)
		}
		if got := tc.a.same(tc.b); got != tc.same {
			t.Errorf("%+v same as %+v: %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

func TestPlacement(t *testing.T) {
	members := []string{"r0", "r1", "r2", "r3", "r4"}
	moved := 0
	for i := range 200 {
		key := "client-" + strconv.Itoa(i)
		h0 := placement(key, 0, members, 2)
		if len(h0) != 2 || h0[0] == h0[1] {
			t.Fatalf("%s: holders %v, want two different relays", key, h0)
		}
		if !slices.Equal(h0, placement(key, 0, slices.Clone(members), 2)) {
			t.Fatalf("%s: placement is not a function of its inputs", key)
		}
		if !slices.Equal(h0, placement(key, 1, members, 2)) {
			moved++
		}
	}
	// With 5 relays and 2 copies, a hop keeps both holders in order with
	// probability 1/20: nearly every hop moves the copies.
	if moved < 150 {
		t.Fatalf("only %d of 200 clients' copies move at a hop", moved)
	}
	if got := placement("k", 3, []string{"only"}, 2); !slices.Equal(got, []string{"only"}) {
		t.Fatalf("one relay: %v", got)
	}
}

// TestNextHolders checks that a hand-off moves as many copies as the group
// allows to relays that held none, the primary's first.
func TestNextHolders(t *testing.T) {
	all := []string{"r0", "r1", "r2", "r3", "r4", "r5"}
	for n := 2; n <= len(all); n++ {
		members := all[:n]
		for i := range 100 {
			key := "client-" + strconv.Itoa(i)
			cur := placement(key, 0, members, 2)
			next := nextHolders(key, 1, members, 2, cur)
			fresh := 0
			for _, h := range next {
				if !slices.Contains(cur, h) {
					fresh++
				}
			}
			want := min(2, n-2) // the relays that hold no copy
			switch {
			case len(next) != 2 || next[0] == next[1]:
				t.Fatalf("%d relays, %s: next holders %v", n, key, next)
			case fresh != want:
				t.Fatalf("%d relays, %s: %v after %v moves %d copies, want %d", n, key, next, cur, fresh, want)
			case n > 2 && slices.Contains(cur, next[0]):
				t.Fatalf("%d relays, %s: the new primary %s held a copy (%v)", n, key, next[0], cur)
			}
		}
	}
	if got := nextHolders("k", 1, []string{"a", "b"}, 3, []string{"a"}); !slices.Equal(got, []string{"b", "a"}) {
		t.Fatalf("fewer relays than copies: %v", got)
	}
}

// sealed returns a SCONE of service svc for tests.
func sealed(t testing.TB, ttl time.Duration) []byte {
	t.Helper()
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scone.NewSealer(ring, scone.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Restore(t.Context(), nil, scone.Expect{Service: "svc"}, "/svc/")
	if err != nil {
		t.Fatal(err)
	}
	st.SetData([]byte("state"))
	_, tok, err := s.Commit(nil, st)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestFromProto(t *testing.T) {
	tok := sealed(t, time.Hour)
	now := time.Now()
	good := &pb.Copy{Key: "k", Gen: 3, Hop: 7, Holders: []string{"a", "b"}, Scones: [][]byte{tok}}
	it, err := fromProto(good, 64, now)
	if err != nil || it.gen != 3 || it.hop != 7 || it.primary() != "a" || !it.expires.After(now) || !it.since.Equal(now) {
		t.Fatalf("fromProto(good) = %+v, %v", it, err)
	}
	for name, c := range map[string]*pb.Copy{
		"nil":        nil,
		"no key":     {Holders: []string{"a"}, Scones: [][]byte{tok}},
		"no holders": {Key: "k", Scones: [][]byte{tok}},
		"no SCONEs":  {Key: "k", Holders: []string{"a"}},
		"too many":   {Key: "k", Holders: []string{"a"}, Scones: slices.Repeat([][]byte{tok}, 65)},
		"garbage":    {Key: "k", Holders: []string{"a"}, Scones: [][]byte{[]byte("not a SCONE")}},
	} {
		if _, err := fromProto(c, 64, now); scone.CodeOf(err) != scone.CodeMalformed {
			t.Errorf("%s: %v, want CodeMalformed", name, err)
		}
	}
}

// FuzzCopy feeds fromProto, which checks every copy another relay sends,
// arbitrary bytes decoded as a Copy.
func FuzzCopy(f *testing.F) {
	tok := sealed(f, time.Hour)
	for _, c := range []*pb.Copy{
		{Key: "k", Gen: 1, Holders: []string{"a", "b"}, Scones: [][]byte{tok}},
		{Key: "k", Holders: []string{"a"}, Scones: [][]byte{tok[:len(tok)/2]}},
		{Key: "k"},
	} {
		b, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		var c pb.Copy
		if proto.Unmarshal(b, &c) != nil {
			return
		}
		it, err := fromProto(&c, 64, now)
		if err != nil {
			if scone.CodeOf(err) == scone.CodeUnknown {
				t.Fatalf("an error without a code: %v", err)
			}
			return
		}
		if it.key == "" || len(it.holders) == 0 || len(it.scones) == 0 || len(it.scones) > 64 {
			t.Fatalf("accepted a copy it must refuse: %+v", it)
		}
	})
}
