package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

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
