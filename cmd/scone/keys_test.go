package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/sconegrpc"
)

func TestKeysCommand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	var out bytes.Buffer
	steps := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"keygen", "--out", file, "--id", "1"}, 0, "key 1, primary"},
		{[]string{"keys", "add", "--file", file}, 0, "added key 2"},
		{[]string{"keys", "add", "--file", file, "--id", "2"}, 1, "duplicate"},
		{[]string{"keys", "retire", "--file", file, "--id", "1"}, 1, "is the primary key"},
		{[]string{"keys", "promote", "--file", file, "--id", "9"}, 1, "no key with ID 9"},
		{[]string{"keys", "promote", "--file", file, "--id", "2"}, 0, "key 2 is the primary"},
		{[]string{"keys", "retire", "--file", file, "--id", "1", "--after", "0s"}, 0, "key 1 stops opening"},
		{[]string{"keys", "list", "--file", file}, 0, "(prune it)"},
		{[]string{"keys", "prune", "--file", file}, 0, "removed 1 retired key(s)"},
		{[]string{"keys", "rotate", "--file", file}, 1, `unknown keys command "rotate"`},
		{[]string{"keys", "list"}, 1, "--file is required"},
		{[]string{"keys", "list", "--file", file + ".missing"}, 1, "no such file"},
	}
	for _, s := range steps {
		out.Reset()
		if code := run(s.args, &out, &out); code != s.code || !strings.Contains(out.String(), s.want) {
			t.Fatalf("scone %v: exit %d, want %d with %q:\n%s", s.args, code, s.code, s.want, out.String())
		}
	}
	ring, err := scone.ReadKeyFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if keys := ring.Keys(); len(keys) != 1 || keys[0].ID != 2 || !keys[0].Primary {
		t.Fatalf("after the rotation the file holds %+v, want key 2 alone, primary", keys)
	}
}

// TestKeygenRandomIDs: two key files made by keygen never share a key ID,
// so a SCONE that meets the wrong key file fails as unknown_key.
func TestKeygenRandomIDs(t *testing.T) {
	dir := t.TempDir()
	ids := map[uint32]bool{}
	for i := range 8 {
		file := filepath.Join(dir, fmt.Sprintf("keys%d.json", i))
		var out bytes.Buffer
		if code := run([]string{"keygen", "--out", file}, &out, &out); code != 0 {
			t.Fatal(out.String())
		}
		ring, err := scone.ReadKeyFile(file)
		if err != nil {
			t.Fatal(err)
		}
		ids[ring.Primary()] = true
	}
	if len(ids) != 8 {
		t.Fatalf("8 key files share IDs: %v", ids)
	}
	a, b := filepath.Join(dir, "keys0.json"), filepath.Join(dir, "keys1.json")
	ringA, _ := scone.ReadKeyFile(a)
	ringB, _ := scone.ReadKeyFile(b)
	sa, _ := scone.NewSealer(ringA)
	sb, _ := scone.NewSealer(ringB)
	want := scone.Expect{Service: "cart"}
	st, err := sa.Restore(t.Context(), nil, want, "/")
	if err != nil {
		t.Fatal(err)
	}
	st.SetData([]byte("x"))
	_, tok, err := sa.Commit(nil, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Restore(t.Context(), tok, want, "/"); scone.CodeOf(err) != scone.CodeUnknownKey {
		t.Fatalf("a SCONE opened with another key file: %v, want unknown_key", err)
	}
}

// TestKeyRotationUnderLoad rotates the key of a running bookstore (client
// mode, every tier sharing one key ring reloaded from a file, as SIGHUP
// does) through add, promote, retire and prune while shopper sessions go
// on: no session may lose anything, and at the end every SCONE is sealed
// with the new key and the old one is gone.
func TestKeyRotationUnderLoad(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	var out bytes.Buffer
	if code := run([]string{"keygen", "--out", file}, &out, &out); code != 0 {
		t.Fatal(out.String())
	}
	ring, err := scone.ReadKeyFile(file)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring, scone.WithTTL(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	dep, err := shop.Deploy(sealer, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer dep.Close()
	conn, err := shop.DialReplicas(dep.Addrs(shop.RoleGateway), sconegrpc.DialOptions(sconegrpc.WithHolderFromContext(holderOf))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	gw := &grpcShopper{gw: pb.NewGatewayClient(conn)}
	sessions := make([]*session, 8)
	for i := range sessions {
		sessions[i] = &session{id: i + 1, rng: rand.New(rand.NewPCG(11, uint64(i+1))), model: newCartModel(), dict: scone.NewDict()}
	}
	shopFor := func(steps int) {
		var wg sync.WaitGroup
		for _, s := range sessions {
			wg.Go(func() {
				ctx := context.WithValue(context.Background(), sessionKey{}, s)
				for range steps {
					s.do(ctx, gw, s.model.nextOp(s.rng))
				}
			})
		}
		wg.Wait()
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	rotate := func(args ...string) {
		t.Helper()
		out.Reset()
		if code := run(append([]string{"keys"}, append(args, "--file", file)...), &out, &out); code != 0 {
			t.Fatalf("scone keys %v: %s", args, out.String())
		}
		if err := reloadKeys(file, ring, log); err != nil {
			t.Fatal(err)
		}
	}
	keysHeld := func() map[uint32]int {
		n := map[uint32]int{}
		for _, s := range sessions {
			for _, h := range s.dict.Headers() {
				n[h.KeyID]++
			}
		}
		return n
	}

	// Sessions run between the steps, so every step happens in the middle
	// of sessions that hold SCONEs sealed before it.
	shopFor(10)
	rotate("add")
	shopFor(10)
	if k := keysHeld(); k[2] != 0 || k[1] == 0 {
		t.Fatalf("before promote, SCONEs by key: %v, want all by key 1", k)
	}
	rotate("promote", "--id", "2")
	shopFor(10)
	if k := keysHeld(); k[1] != 0 || k[2] == 0 {
		t.Fatalf("after promote and a few calls, SCONEs by key: %v, want all by key 2", k)
	}
	rotate("retire", "--id", "1", "--after", "0s")
	rotate("prune")
	shopFor(10)
	for _, s := range sessions {
		s.finalCheck(context.WithValue(context.Background(), sessionKey{}, s), gw)
		for _, p := range s.problems {
			t.Errorf("session %d: %s", s.id, p)
		}
		if s.unknown > 0 {
			t.Errorf("session %d: %d calls failed", s.id, s.unknown)
		}
	}
	if keys := ring.Keys(); len(keys) != 1 || keys[0].ID != 2 {
		t.Fatalf("the ring holds %+v after the rotation", keys)
	}
}
