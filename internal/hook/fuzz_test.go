package hook

import (
	"slices"
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/badinput"
)

// FuzzApplyReply: a holder given a reply with any SCONEs and any dropped
// session either keeps the reply whole or changes nothing, and keeps only
// SCONEs that parse; the session it held before stays held unless the
// reply ended it or brought a newer version of it.
func FuzzApplyReply(f *testing.F) {
	c, err := badinput.Load("../../testdata/badinput")
	if err != nil {
		f.Fatal(err)
	}
	for _, cs := range c.Cases {
		if cs.Carrier == badinput.Envelope && len(cs.Payloads[0]) <= 4<<10 {
			f.Add(cs.Payloads[0], []byte(nil), "", "")
		}
	}
	now := t0 // the bad-input cases are sealed to be live at t0
	s, _ := newTestSealer(f)
	good := sealHdr(f, s, "cart", "/shop.Gateway/", 7, t0.Add(time.Hour))
	hg, err := scone.ParseHeader(good)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, good, hg.Service, hg.Scope)
	f.Fuzz(func(t *testing.T, a, b []byte, service, scope string) {
		d := scone.NewDict(scone.WithDictClock(func() time.Time { return now }))
		if _, err := d.Put(good); err != nil {
			t.Fatal(err)
		}
		before := d.Tokens()
		r := Reply{SCONEs: [][]byte{a, b}}
		if service != "" {
			r.Dropped = []HolderKey{{Service: service, Scope: scope}}
		}
		if err := ApplyReply(d, &r, [][]byte{good}); err != nil {
			if after := d.Tokens(); !slices.EqualFunc(before, after, func(x, y []byte) bool { return string(x) == string(y) }) {
				t.Fatalf("a refused reply changed the holder: %v", err)
			}
			return
		}
		held := false
		for _, tok := range d.Tokens() {
			h, err := Peek(tok)
			if err != nil {
				t.Fatalf("the holder keeps a SCONE that does not parse: %v", err)
			}
			held = held || string(h.Service) == hg.Service && string(h.Scope) == hg.Scope && h.Version >= hg.Version
		}
		ended := service == hg.Service && scope == hg.Scope
		if !held && !ended {
			t.Fatal("the session held before is gone, and the reply did not end it")
		}
	})
}
