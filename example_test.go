package scone_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/scone-project/scone"
)

// A server seals a client's state into a SCONE and any replica with the key
// opens it again on the next request.
func Example() {
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		log.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring, scone.WithTTL(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	want := scone.Expect{Service: "cart"}

	// First request: no SCONE yet. The handler sets state; Commit seals it.
	st, _ := sealer.Restore(ctx, nil, want, "/shop.Cart/")
	st.SetData([]byte("1 book"))
	outcome, token, _ := sealer.Commit(nil, st)
	fmt.Println("first call sealed a new SCONE:", outcome == scone.Updated)

	// The holder reads only the cleartext header.
	h, _ := scone.ParseHeader(token)
	fmt.Println("holder sees:", h.Service, h.Scope, "version", h.Version)

	// Next request, on any replica: the state comes back.
	st, err = sealer.Restore(ctx, token, want, "/shop.Cart/")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("restored: %q at version %d\n", st.Data(), st.Version())

	// A changed byte is an error with a code, never an empty state.
	token[len(token)-1] ^= 1
	_, err = sealer.Restore(ctx, token, want, "/shop.Cart/")
	fmt.Println("tampered:", scone.CodeOf(err))
	// Output:
	// first call sealed a new SCONE: true
	// holder sees: cart /shop.Cart/ version 1
	// restored: "1 book" at version 1
	// tampered: tampered
}

// Rotating keys while serving: add the new key everywhere, promote it, then
// retire the old one after the longest SCONE lifetime.
func ExampleKeyRing_rotation() {
	ctx := context.Background()
	want := scone.Expect{Service: "cart"}
	now := time.Now()
	ring, _ := scone.NewKeyRing(1, scone.GenerateKey(1, now))
	sealer, _ := scone.NewSealer(ring, scone.WithTTL(time.Hour))
	st, _ := sealer.Restore(ctx, nil, want, "/")
	st.SetData([]byte("state"))
	_, old, _ := sealer.Commit(nil, st)

	ring.Add(scone.GenerateKey(2, now))
	ring.Promote(2)
	st, err := sealer.Restore(ctx, old, want, "/")
	fmt.Println("old SCONE opens:", err == nil)
	_, next, _ := sealer.Commit(nil, st) // re-sealed under the new primary
	h, _ := scone.ParseHeader(next)
	fmt.Println("next SCONE sealed with key", h.KeyID)

	ring.Retire(1, now) // in production: now + the TTL
	_, err = sealer.Restore(ctx, old, want, "/")
	fmt.Println("after retiring key 1:", scone.CodeOf(err))
	// Output:
	// old SCONE opens: true
	// next SCONE sealed with key 2
	// after retiring key 1: unknown_key
}

// A client's dictionary attaches every SCONE whose scope matches the call.
func ExampleDict() {
	ring, _ := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	sealer, _ := scone.NewSealer(ring)
	// next is what a server of service does: the successor of token.
	next := func(service string, token []byte) []byte {
		st, _ := sealer.Restore(context.Background(), token, scone.Expect{Service: service}, "/shop.Gateway/")
		st.SetData([]byte("state"))
		_, tok, _ := sealer.Commit(nil, st)
		return tok
	}
	gateway := next("gateway", nil)
	cart1 := next("cart", nil)
	cart2 := next("cart", cart1)

	d := scone.NewDict()
	d.Put(gateway)
	d.Put(cart2) // a back end's SCONE, scoped to the gateway
	stored, _ := d.Put(cart1)
	fmt.Println("late older version stored:", stored)

	fmt.Println("attached to /shop.Gateway/AddItem:", len(d.Match(nil, "/shop.Gateway/AddItem")))
	fmt.Println("attached to /shop.Search/Find:", len(d.Match(nil, "/shop.Search/Find")))
	// Output:
	// late older version stored: false
	// attached to /shop.Gateway/AddItem: 2
	// attached to /shop.Search/Find: 0
}

// Handlers work with their own types through a Typed view.
func ExampleTyped() {
	type Cart struct{ Items []string }
	cart := scone.NewTyped(scone.JSONCodec[Cart]())

	// What a handler does, given the request's context.
	addItem := func(ctx context.Context, item string) error {
		c, _, err := cart.Load(ctx)
		if err != nil {
			return err
		}
		c.Items = append(c.Items, item)
		return cart.Store(ctx, c)
	}

	ring, _ := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	sealer, _ := scone.NewSealer(ring)
	var token []byte
	for _, item := range []string{"dune", "neuromancer"} {
		st, _ := sealer.Restore(context.Background(), token, scone.Expect{Service: "cart"}, "/")
		if err := addItem(scone.NewContext(context.Background(), st), item); err != nil {
			log.Fatal(err)
		}
		_, token, _ = sealer.Commit(nil, st)
	}
	st, _ := sealer.Restore(context.Background(), token, scone.Expect{Service: "cart"}, "/")
	c, _, _ := cart.Load(scone.NewContext(context.Background(), st))
	fmt.Println(c.Items)
	// Output:
	// [dune neuromancer]
}
