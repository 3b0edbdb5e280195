package main

import (
	"bytes"
	"context"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/scone-project/scone/internal/chaosctl"
	"github.com/scone-project/scone/internal/daemontest"
)

// TestLeanDeps: the operator's binary links none of the lab's
// dependencies (sconelab has them): no NATS server (the client is fine),
// no plotting, no Redis client, no linearizability checker, no browser
// driver.
func TestLeanDeps(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	banned := []string{
		"github.com/nats-io/nats-server",
		"gonum.org/",
		"github.com/redis/go-redis",
		"github.com/anishathalye/porcupine",
		"github.com/chromedp/",
		"github.com/scone-project/scone/internal/chaos",
		"github.com/scone-project/scone/examples/",
	}
	for pkg := range strings.Lines(string(out)) {
		pkg = strings.TrimSpace(pkg)
		for _, b := range banned {
			if strings.HasPrefix(pkg, b) && pkg != "github.com/scone-project/scone/internal/chaosctl" {
				t.Errorf("cmd/scone links %s", pkg)
			}
		}
	}
}

// TestRelayIgnoresChaosClock: in the default build, a relay started with
// SCONE_CHAOS_CLOCK set serves no fault control there (so nothing can skew
// its clock or cut its gossip).
func TestRelayIgnoresChaosClock(t *testing.T) {
	if chaosctl.Enabled {
		t.Skip("built with -tags sconechaos")
	}
	listen, admin, ctl := daemontest.Addr(t), daemontest.Addr(t), daemontest.Addr(t)
	t.Setenv(chaosctl.Env, ctl)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- runRelay(ctx, []string{"--listen=" + listen, "--admin=" + admin, "--upstream=127.0.0.1:1", "--identity-header=scone-client"}, &out)
	}()
	daemontest.WaitFor(t, "http://"+admin+"/healthz")
	req, err := http.NewRequest(http.MethodPut, "http://"+ctl+"/skew?d=1h", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("PUT /skew on %s=%s: %s; want no server there", chaosctl.Env, ctl, resp.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("relay ended with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the relay did not stop")
	}
}
