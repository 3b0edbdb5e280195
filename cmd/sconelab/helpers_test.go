package main

import (
	"os/exec"
	"path/filepath"
	"testing"
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
