package scone

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestScopeMatches(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		scope, target string
		want          bool
	}{
		{"", "/shop.Gateway/AddItem", true},
		{"/shop.Gateway/", "/shop.Gateway/AddItem", true},
		{"/shop.Gateway", "/shop.Gateway/AddItem", true},
		{"/shop.Gateway/AddItem", "/shop.Gateway/AddItem", true},
		{"/", "/shop.Gateway/AddItem", true},
		{"/shop.Gate", "/shop.Gateway/AddItem", false},
		{"/shop.GatewayAdmin/", "/shop.Gateway/AddItem", false},
		{"/shop.Gateway/AddItemX", "/shop.Gateway/AddItem", false},
		{"/shop.Gateway/", "/shop.GatewayAdmin/Reset", false},
		{"/bookstore/compsci", "/bookstore/compsci/knuth", true},
		{"/bookstore/compsci", "/bookstore/compscience", false},
	} {
		if got := ScopeMatches(tc.scope, tc.target); got != tc.want {
			t.Errorf("ScopeMatches(%q, %q) = %v, want %v", tc.scope, tc.target, got, tc.want)
		}
	}
}

// TestCandidateScopes checks that candidateScopes yields exactly the
// prefixes of a target that ScopeMatches, each once.
func TestCandidateScopes(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"", "/", "/a", "/a/", "/a/b", "//a//b/", "/shop.Gateway/AddItem", "a//"} {
		var want []string
		for i := 0; i <= len(target); i++ {
			if ScopeMatches(target[:i], target) {
				want = append(want, target[:i])
			}
		}
		var got []string
		for s := range candidateScopes(target) {
			got = append(got, s)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("candidateScopes(%q) = %q, want %q", target, got, want)
		}
	}
}

// sealHdr seals a SCONE with the given routing fields.
func sealHdr(t testing.TB, s *Sealer, service, scope string, version uint64, expires time.Time) []byte {
	t.Helper()
	sc := sampleSCONE(s.cfg.clock(), nil)
	sc.Service, sc.Scope, sc.Version, sc.Expires = service, scope, version, expires
	return mustSeal(t, s, sc)
}

func TestDictNewestWins(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	d := NewDict(WithDictClock(clk.Now))
	exp := clk.Now().Add(time.Hour)
	v2 := sealHdr(t, s, "cart", "/shop.Gateway/", 2, exp)
	v1 := sealHdr(t, s, "cart", "/shop.Gateway/", 1, exp)
	v2b := sealHdr(t, s, "cart", "/shop.Gateway/", 2, exp)
	if ok, err := d.Put(v2); !ok || err != nil {
		t.Fatalf("Put v2 = %v %v", ok, err)
	}
	if ok, err := d.Put(v1); ok || err != nil {
		t.Fatalf("a late v1 overwrote v2: %v %v", ok, err)
	}
	if got, _ := d.Get("cart", "/shop.Gateway/"); string(got) != string(v2) {
		t.Fatal("holder lost v2")
	}
	if ok, _ := d.Put(v2b); !ok {
		t.Fatal("an equal version (a re-seal) was refused")
	}
	if n, b := d.Len(); n != 1 || b != len(v2b) {
		t.Fatalf("Len = %d, %d", n, b)
	}
}

func TestDictMatchByScope(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	d := NewDict(WithDictClock(clk.Now))
	exp := clk.Now().Add(time.Hour)
	// The gateway's own SCONE, and its back ends' SCONEs scoped to it.
	for _, svc := range []string{"gateway", "cart", "inventory"} {
		if _, err := d.Put(sealHdr(t, s, svc, "/shop.Gateway/", 1, exp)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.Put(sealHdr(t, s, "admin", "/shop.GatewayAdmin/", 1, exp)); err != nil {
		t.Fatal(err)
	}
	services := func(target string) []string {
		var out []string
		for _, tok := range d.Match(nil, target) {
			h, _ := ParseHeader(tok)
			out = append(out, h.Service)
		}
		slices.Sort(out)
		return out
	}
	if got := services("/shop.Gateway/AddItem"); !slices.Equal(got, []string{"cart", "gateway", "inventory"}) {
		t.Errorf("Match gateway = %v", got)
	}
	if got := services("/shop.GatewayAdmin/Reset"); !slices.Equal(got, []string{"admin"}) {
		t.Errorf("Match admin = %v", got)
	}
	if got := services("/other.Service/Call"); len(got) != 0 {
		t.Errorf("Match other = %v", got)
	}
	d.Delete("cart", "/shop.Gateway/")
	if got := services("/shop.Gateway/AddItem"); !slices.Equal(got, []string{"gateway", "inventory"}) {
		t.Errorf("after Delete = %v", got)
	}
}

func TestDictExpiry(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	d := NewDict(WithDictClock(clk.Now))
	now := clk.Now()
	for i, ttl := range []time.Duration{time.Minute, time.Hour, 2 * time.Hour} {
		if _, err := d.Put(sealHdr(t, s, fmt.Sprint("svc", i), "/s/", 1, now.Add(ttl))); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _ := d.Put(sealHdr(t, s, "late", "/s/", 1, now)); ok {
		t.Fatal("an already expired SCONE was stored")
	}
	clk.Advance(time.Minute)
	if got := len(d.Match(nil, "/s/x")); got != 2 {
		t.Fatalf("after 1m: %d live", got)
	}
	if _, ok := d.Get("svc0", "/s/"); ok {
		t.Fatal("Get returned an expired SCONE")
	}
	clk.Advance(time.Hour)
	if n := d.Sweep(); n != 1 {
		t.Fatalf("Sweep dropped %d", n)
	}
	if n, _ := d.Len(); n != 1 {
		t.Fatalf("%d left", n)
	}
	if hs := d.Headers(); len(hs) != 1 || hs[0].Service != "svc2" {
		t.Fatalf("Headers = %+v", hs)
	}
	// One dropped by Match on the way, one by Sweep; the refused late one
	// was never held.
	if n := d.Expired(); n != 2 {
		t.Fatalf("Expired() = %d, want 2", n)
	}
}

// TestDictBound checks what happens at the bound: expired SCONEs make room;
// live ones are never evicted, the new one is refused with CodeExhausted.
func TestDictBound(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	d := NewDict(WithDictClock(clk.Now), WithDictLimits(2, 1<<20))
	now := clk.Now()
	a := sealHdr(t, s, "a", "/", 1, now.Add(time.Minute))
	b := sealHdr(t, s, "b", "/", 1, now.Add(time.Hour))
	c := sealHdr(t, s, "c", "/", 1, now.Add(time.Hour))
	for _, tok := range [][]byte{a, b} {
		if _, err := d.Put(tok); err != nil {
			t.Fatal(err)
		}
	}
	_, err := d.Put(c)
	wantCode(t, err, CodeExhausted)
	if _, ok := d.Get("a", "/"); !ok {
		t.Fatal("a live SCONE was evicted")
	}
	// Replacing a held SCONE always fits the entry bound.
	if _, err := d.Put(sealHdr(t, s, "b", "/", 2, now.Add(time.Hour))); err != nil {
		t.Fatalf("replacing b: %v", err)
	}
	clk.Advance(time.Minute) // a expires: room for c
	if _, err := d.Put(c); err != nil {
		t.Fatalf("after a expired: %v", err)
	}

	// The byte bound works the same way.
	small := NewDict(WithDictClock(clk.Now), WithDictLimits(100, len(b)+10))
	if _, err := small.Put(b); err != nil {
		t.Fatal(err)
	}
	_, err = small.Put(c)
	wantCode(t, err, CodeExhausted)
}

func TestDictRefusesGarbage(t *testing.T) {
	t.Parallel()
	d := NewDict()
	_, err := d.Put([]byte("not a scone"))
	wantCode(t, err, CodeMalformed)
	_, err = d.Put(make([]byte, MaxEnvelopeSize+1))
	wantCode(t, err, CodeTooLarge)
	if n, _ := d.Len(); n != 0 {
		t.Fatal("garbage was stored")
	}
}

func TestDictConcurrent(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	d := NewDict(WithDictClock(clk.Now))
	exp := clk.Now().Add(time.Hour)
	var toks [][]byte
	for v := uint64(1); v <= 50; v++ {
		toks = append(toks, sealHdr(t, s, "cart", "/shop.Gateway/", v, exp))
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range toks {
				tok := toks[(i*7+g*13)%len(toks)]
				if _, err := d.Put(tok); err != nil {
					t.Error(err)
				}
				d.Match(nil, "/shop.Gateway/AddItem")
			}
		})
	}
	wg.Wait()
	got, _ := d.Get("cart", "/shop.Gateway/")
	if h, _ := ParseHeader(got); h.Version != 50 {
		t.Fatalf("holder kept v%d, want the newest, v50", h.Version)
	}
}

// TestDictExpiredEntryIsNoRival: a new session's SCONE replaces an expired
// one of a higher version.
func TestDictExpiredEntryIsNoRival(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	d := NewDict(WithDictClock(clk.Now))
	if _, err := d.Put(sealHdr(t, s, "cart", "/s/", 9, clk.Now().Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if ok, err := d.Put(sealHdr(t, s, "cart", "/s/", 1, clk.Now().Add(time.Hour))); !ok || err != nil {
		t.Fatalf("a new session behind an expired entry: %v %v", ok, err)
	}
	if n, _ := d.Len(); n != 1 {
		t.Fatalf("%d entries", n)
	}
}

func TestDictApply(t *testing.T) {
	t.Parallel()
	s, clk := newTestSealer(t)
	exp := clk.Now().Add(time.Hour)
	d := NewDict(WithDictClock(clk.Now), WithDictLimits(3, 1<<20))
	for _, svc := range []string{"gateway", "cart"} {
		if _, err := d.Put(sealHdr(t, s, svc, "/g/", 5, exp)); err != nil {
			t.Fatal(err)
		}
	}
	// A reply: cart dropped, gateway v6, inventory v1, and a stale gateway v4.
	err := d.apply([]holderKey{{Service: "cart", Scope: "/g/"}}, [][]byte{
		sealHdr(t, s, "gateway", "/g/", 6, exp),
		sealHdr(t, s, "inventory", "/g/", 1, exp),
		sealHdr(t, s, "gateway", "/g/", 4, exp),
	})
	if err != nil {
		t.Fatal(err)
	}
	versions := map[string]uint64{}
	for _, h := range d.Headers() {
		versions[h.Service] = h.Version
	}
	if len(versions) != 2 || versions["gateway"] != 6 || versions["inventory"] != 1 {
		t.Fatalf("after Apply: %v", versions)
	}
	// A batch that does not fit changes nothing, drops included.
	before := d.Tokens()
	err = d.apply([]holderKey{{Service: "gateway", Scope: "/g/"}}, [][]byte{
		sealHdr(t, s, "a", "/g/", 1, exp), sealHdr(t, s, "b", "/g/", 1, exp), sealHdr(t, s, "c", "/g/", 1, exp),
	})
	wantCode(t, err, CodeExhausted)
	if len(d.Tokens()) != len(before) {
		t.Fatal("a refused batch changed the holder")
	}
	if _, ok := d.Get("gateway", "/g/"); !ok {
		t.Fatal("a refused batch applied its drop")
	}
	// A malformed token refuses the batch before anything changes.
	err = d.apply([]holderKey{{Service: "gateway", Scope: "/g/"}}, [][]byte{[]byte("junk")})
	wantCode(t, err, CodeMalformed)
	if _, ok := d.Get("gateway", "/g/"); !ok {
		t.Fatal("a malformed batch applied its drop")
	}
}
