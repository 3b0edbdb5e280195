package main

import (
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/scone-project/scone"
	pb "github.com/scone-project/scone/examples/bookstore/bookstorepb"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/cli"
	"github.com/scone-project/scone/sconegrpc"
)

// TestKeyRotationUnderLoad rotates the key of a running bookstore (client
// mode, every tier sharing one key ring reloaded from a file, as SIGHUP
// does) with the scone keys command through add, promote, retire and prune
// while shopper sessions go on: no session may lose anything, and at the end every SCONE is sealed
// with the new key and the old one is gone.
func TestKeyRotationUnderLoad(t *testing.T) {
	sconeBin, _ := buildDefault(t)
	file := filepath.Join(t.TempDir(), "keys.json")
	if out, err := exec.Command(sconeBin, "keygen", "--out", file, "--id", "1").CombinedOutput(); err != nil {
		t.Fatalf("scone keygen: %v\n%s", err, out)
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
		if out, err := exec.Command(sconeBin, append([]string{"keys"}, append(args, "--file", file)...)...).CombinedOutput(); err != nil {
			t.Fatalf("scone keys %v: %v\n%s", args, err, out)
		}
		if err := cli.ReloadKeys(file, ring, log); err != nil {
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
