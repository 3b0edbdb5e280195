package membership

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestStartGossip(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a, err := startGossip(gossiper{Config: memberlist.DefaultLANConfig(), Name: "a", Addr: "127.0.0.1:0", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Shutdown()
	b, err := startGossip(gossiper{Config: memberlist.DefaultLANConfig(), Name: "b", Addr: "127.0.0.1:0", Logger: log,
		Seeds: []string{a.LocalNode().Address()}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown()
	if n := b.NumMembers(); n != 2 {
		t.Fatalf("b sees %d members after joining a, want 2", n)
	}
	for _, addr := range []string{"no-port", "127.0.0.1:http"} {
		if _, err := startGossip(gossiper{Config: memberlist.DefaultLANConfig(), Name: "c", Addr: addr, Logger: log}); err == nil || !strings.Contains(err.Error(), "gossip address") {
			t.Errorf("address %q: %v, want a gossip address error", addr, err)
		}
	}
}
