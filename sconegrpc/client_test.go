package sconegrpc

import (
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/grpcframe"
	"github.com/scone-project/scone/internal/hook"
)

// TestForeignDrop: a reply may only end sessions the call carried.
func TestForeignDrop(t *testing.T) {
	t.Parallel()
	ring, _ := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	s, _ := scone.NewSealer(ring)
	now := time.Now()
	seal := func(service string) []byte {
		tok, err := hook.Seal(s, nil, &scone.SCONE{Service: service, Scope: "/g/", Version: 1, IssuedAt: now, Expires: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	cart, inv := seal("cart"), seal("inventory")
	d := scone.NewDict()
	d.Put(cart)
	d.Put(inv)
	o := &originHolder{h: d, c: newClient(nil)}
	// The call carried cart only; the reply tries to end inventory's session.
	err := o.apply(&grpcframe.Frame{Dropped: []hook.HolderKey{{Service: "inventory", Scope: "/g/"}}}, [][]byte{cart})
	if scone.CodeOf(err) != scone.CodeMalformed {
		t.Fatalf("foreign drop: %v", err)
	}
	if _, ok := d.Get("inventory", "/g/"); !ok {
		t.Fatal("a foreign drop deleted a SCONE")
	}
	if err := o.apply(&grpcframe.Frame{Dropped: []hook.HolderKey{{Service: "cart", Scope: "/g/"}}}, [][]byte{cart}); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Get("cart", "/g/"); ok {
		t.Fatal("a legitimate drop was ignored")
	}
	c, err := hook.NewCarry("/g/", [][]byte{inv})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Apply("r", []hook.HolderKey{{Service: "cart", Scope: "/g/"}}, nil); scone.CodeOf(err) != scone.CodeMalformed {
		t.Fatalf("foreign drop in a carry: %v", err)
	}
}
