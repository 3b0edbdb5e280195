package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
)

func TestNewer(t *testing.T) {
	a := &Record{RV: 2, Stamp: 10}
	b := &Record{RV: 3, Stamp: 1}
	c := &Record{RV: 3, Stamp: 5}
	cases := []struct {
		r, o *Record
		want bool
	}{
		{a, nil, true},
		{nil, a, false},
		{nil, nil, false},
		{b, a, true},
		{a, b, false},
		{c, b, true},
		{b, c, false},
		{c, c, false},
	}
	for i, tc := range cases {
		if got := tc.r.Newer(tc.o); got != tc.want {
			t.Errorf("case %d: Newer = %v, want %v", i, got, tc.want)
		}
	}
}

func TestAccept(t *testing.T) {
	held := &Record{RV: 5, Stamp: 100}
	cases := []struct {
		name   string
		held   *Record
		rec    *Record
		base   uint64
		repair bool
		want   Verdict
	}{
		{"first write", nil, &Record{RV: 1}, 0, false, Accepted},
		{"write on the held version", held, &Record{RV: 6}, 5, false, Accepted},
		{"write catching up a replica that missed one", held, &Record{RV: 7}, 6, false, Accepted},
		{"write from an older base", held, &Record{RV: 5, Stamp: 200}, 4, false, Conflict},
		{"zombie from a much older base", held, &Record{RV: 2}, 1, false, Conflict},
		{"the same write again, after repair copied it", held, &Record{RV: 5, Stamp: 100}, 4, false, Accepted},
		{"repair newer", held, &Record{RV: 6}, 0, true, Accepted},
		{"repair same version later stamp", held, &Record{RV: 5, Stamp: 101}, 0, true, Accepted},
		{"repair same record", held, held, 0, true, Stale},
		{"repair older", held, &Record{RV: 4}, 0, true, Stale},
		{"repair to an empty replica", nil, &Record{RV: 3}, 0, true, Accepted},
	}
	for _, tc := range cases {
		if got := Accept(tc.held, tc.rec, tc.base, tc.repair); got != tc.want {
			t.Errorf("%s: Accept = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRecordExpires(t *testing.T) {
	s := testSealer(t)
	now := time.Now()
	short := sealFor(t, s, now, time.Minute)
	long := sealFor(t, s, now, time.Hour)
	r := &Record{SCONEs: [][]byte{short, long, []byte("not a scone")}}
	got := r.Expires()
	if got.Before(now.Add(59*time.Minute)) || got.After(now.Add(61*time.Minute)) {
		t.Fatalf("Expires = %v, want about an hour from now", got)
	}
	if !(&Record{}).Expires().IsZero() {
		t.Fatal("an empty record expires at a non-zero time")
	}
}

func TestStoreSweep(t *testing.T) {
	s := testSealer(t)
	now := time.Now()
	st := newStore()
	st.put(&Record{Key: "a", RV: 1, SCONEs: [][]byte{sealFor(t, s, now, time.Minute)}}, 0, false)
	st.put(&Record{Key: "b", RV: 1, SCONEs: [][]byte{sealFor(t, s, now, time.Hour)}}, 0, false)
	if n := st.sweep(now.Add(2 * time.Minute)); n != 1 {
		t.Fatalf("sweep dropped %d records, want 1", n)
	}
	if st.get("a") != nil || st.get("b") == nil {
		t.Fatal("sweep dropped the wrong record")
	}
}

func TestStoreUndo(t *testing.T) {
	st := newStore()
	r1 := &Record{Key: "a", RV: 1, Stamp: 1}
	r2 := &Record{Key: "a", RV: 2, Stamp: 2}
	if v, _ := st.put(r1, 0, false); v != Accepted {
		t.Fatal("first write refused")
	}
	if v, _ := st.put(r2, 1, false); v != Accepted {
		t.Fatal("second write refused")
	}
	now := time.Now()
	if u := st.undo("a", 2, 999, now); u.undone || !u.fenced || u.held != 2 {
		t.Fatalf("undo of a version not held: %+v, want fenced, holding 2", u)
	}
	if u := st.undo("a", 2, 2, now); !u.undone || u.held != 1 || !u.settles(2) {
		t.Fatalf("undo of the held version: %+v", u)
	}
	if got := st.get("a"); got != r1 {
		t.Fatalf("after undo the store holds %+v, want the first record", got)
	}
	if u := st.undo("a", 1, 1, now); !u.undone || st.get("a") != nil {
		t.Fatal("undo of the first write left a record")
	}
	// A write refused leaves the record as it was.
	st.put(r2, 1, false)
	if v, rv := st.put(&Record{Key: "a", RV: 2, Stamp: 3}, 1, false); v != Conflict || rv != 2 {
		t.Fatalf("conflicting write: verdict %v rv %d", v, rv)
	}
	if st.get("a") != r2 {
		t.Fatal("a refused write changed the record")
	}
}

func testSealer(t testing.TB) *scone.Sealer {
	t.Helper()
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	s, err := scone.NewSealer(ring)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sealFor(t *testing.T, s *scone.Sealer, now time.Time, ttl time.Duration) []byte {
	t.Helper()
	tok, err := hook.Seal(s, nil, &scone.SCONE{Service: "svc", IssuedAt: now, Expires: now.Add(ttl), Data: []byte("x")})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestStoreFence: an undo that arrives before its write (the write was held
// up in the network) fences it, so the write is refused when it lands, and
// the writer may report that nothing changed.
func TestStoreFence(t *testing.T) {
	st := newStore()
	now := time.Now()
	late := &Record{Key: "a", RV: 1, Stamp: 7}
	u := st.undo("a", 1, 7, now)
	if u.undone || !u.fenced || u.held != 0 || !u.settles(1) {
		t.Fatalf("undo before the write: %+v, want fenced and settled", u)
	}
	if v, _ := st.put(late, 0, false); v != Conflict {
		t.Fatalf("a fenced write landed: verdict %v", v)
	}
	if st.get("a") != nil {
		t.Fatal("a fenced write changed the store")
	}
	// Another write of the same version (a retry, new stamp) is not fenced.
	retry := &Record{Key: "a", RV: 1, Stamp: 8}
	if v, _ := st.put(retry, 0, false); v != Accepted {
		t.Fatalf("a retry was refused: verdict %v", v)
	}
	// Repair is not fenced: it copies what another owner holds.
	if v, _ := st.put(&Record{Key: "b", RV: 1, Stamp: 1}, 0, true); v != Accepted {
		t.Fatal("repair refused")
	}

	// A newer version is held: the write may have been built on, so the
	// undo does not settle it.
	st.put(&Record{Key: "a", RV: 2, Stamp: 9}, 1, false)
	if u := st.undo("a", 1, 8, now); u.undone || u.settles(1) {
		t.Fatalf("undo of a write built on: %+v, want not settled", u)
	}

	// Fences go after fenceTTL.
	if st.sweep(now.Add(fenceTTL)); st.isFenced(late) || st.nfences != 0 {
		t.Fatalf("fences left after their TTL: %d", st.nfences)
	}
}

// TestStoreFenceBound: past maxFences an undo does not fence, and says so.
func TestStoreFenceBound(t *testing.T) {
	st := newStore()
	now := time.Now()
	for i := range maxFences {
		if !st.undo(fmt.Sprint(i), 1, 1, now).fenced {
			t.Fatalf("fence %d refused below the bound", i)
		}
	}
	if u := st.undo("one more", 1, 1, now); u.fenced || u.settles(1) {
		t.Fatalf("undo past the bound: %+v, want neither fenced nor settled", u)
	}
	if v, _ := st.put(&Record{Key: "one more", RV: 1, Stamp: 1}, 0, false); v != Accepted {
		t.Fatal("an unfenced write was refused")
	}
}

// TestStoreUndoAfterSpread: a write that repair copied to other nodes before
// its undo is taken back here but not everywhere, so the undo does not
// settle it.
func TestStoreUndoAfterSpread(t *testing.T) {
	st := newStore()
	now := time.Now()
	st.put(&Record{Key: "a", RV: 1, Stamp: 1}, 0, false)
	w := &Record{Key: "a", RV: 2, Stamp: 2}
	st.put(w, 1, false)
	if u := st.undo("a", 2, 2, now); !u.undone || !u.settles(2) {
		t.Fatalf("undo before any copy: %+v, want settled", u)
	}
	st.put(w, 1, false)
	if got := st.spread("a"); got != w {
		t.Fatalf("spread returned %+v, want the write", got)
	}
	if u := st.undo("a", 2, 2, now); !u.undone || u.settles(2) {
		t.Fatalf("undo after repair copied the write: %+v, want undone but not settled", u)
	}
	// A new write starts unspread, and a copy of the one before it does
	// not mark it.
	nw := &Record{Key: "a", RV: 2, Stamp: 3}
	st.put(nw, 1, false)
	if st.spreadIf(w) {
		t.Fatal("spreadIf marked a record no longer held")
	}
	if u := st.undo("a", 2, 3, now); !u.settles(2) {
		t.Fatalf("undo of a new write: %+v, want settled", u)
	}
}
