package scone

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestThreatModelTests: every test that docs/security.md's threat model
// table names exists in the module, so no row claims a defence that no test
// checks.
func TestThreatModelTests(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile(filepath.Join("docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	start := strings.Index(s, "## Threat model")
	if start < 0 {
		t.Fatal("docs/security.md has no threat model")
	}
	end := strings.Index(s[start+1:], "\n## ")
	table := s[start : start+1+end]
	named := regexp.MustCompile("`(Test[A-Za-z0-9_]+)`").FindAllStringSubmatch(table, -1)
	rows := strings.Count(table, "\n| ") - 2 // less the header and its rule
	if rows < 20 || len(named) < rows {
		t.Fatalf("%d rows naming %d tests: the table is cut short", rows, len(named))
	}
	defined := map[string]bool{}
	decl := regexp.MustCompile(`(?m)^func (Test[A-Za-z0-9_]+)\(`)
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range decl.FindAllStringSubmatch(string(b), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range named {
		if !defined[m[1]] {
			t.Errorf("the threat model names %s, which no _test.go file defines", m[1])
		}
	}
}
