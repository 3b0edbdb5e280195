package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/scone-project/scone/internal/freeport"
)

// buildDefault builds scone and the bookstore example as a user would
// (no build tags) into a temporary folder, and returns their paths.
func buildDefault(t *testing.T) (scone, bookstore string) {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+string(filepath.Separator), labPackages[0], labPackages[1]).CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	b := binsIn(dir)
	return b.scone, b.bookstore
}

// freePort returns a loopback address to start a daemon on: free for TCP
// and UDP, and outside the ports the kernel gives outgoing connections, so
// nothing takes it before the daemon binds it (internal/freeport).
func freePort(t *testing.T) string {
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// waitFor waits until url answers 200, up to 10 s.
func waitFor(t *testing.T, url string) {
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

// get returns the body of a GET of url.
func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// scrape fetches a daemon's /metrics, parses it as Prometheus text, checks
// that every family in want is there and that every scone_ family it serves
// is documented in docs/operations.md, and returns the families.
func scrape(t *testing.T, admin string, want ...string) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
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
