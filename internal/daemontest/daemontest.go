// Package daemontest has the helpers the tests of the commands (cmd/scone,
// cmd/sconelab) share to run daemons: an address to start one on, waiting
// for it to answer, and reading its admin endpoints.
package daemontest

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scone-project/scone/internal/freeport"
)

// Addr returns a loopback address to start a daemon on: free for TCP and
// UDP, and outside the ports the kernel gives outgoing connections, so
// nothing takes it before the daemon binds it (internal/freeport).
func Addr(t testing.TB) string {
	t.Helper()
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// WaitFor waits until url answers 200, up to 10 s.
func WaitFor(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not answer", url)
}

// Get returns the body of a GET of url.
func Get(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// Scrape fetches a daemon's /metrics, parses it as Prometheus text, checks
// that every family in want is there and that every scone_ family it serves
// is documented in docs/operations.md (found from a command's package
// directory, two levels down), and returns the families.
func Scrape(t testing.TB, admin string, want ...string) map[string]bool {
	t.Helper()
	body := Get(t, "http://"+admin+"/metrics")
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics of %s does not parse as Prometheus text: %v", admin, err)
	}
	docs, err := os.ReadFile(filepath.Join("..", "..", "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for name := range families {
		got[name] = true
		if strings.HasPrefix(name, "scone_") && !strings.Contains(string(docs), "`"+name) {
			t.Errorf("%s serves %s, which docs/operations.md does not list", admin, name)
		}
	}
	for _, name := range want {
		if !got[name] {
			t.Errorf("/metrics of %s lacks %s", admin, name)
		}
	}
	return got
}
