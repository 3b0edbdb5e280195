package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGossipKeyFile: a gossip key file round-trips, keeps its order (the
// first key is the primary), and is refused when group or others can read
// it, or when a line is not a key.
func TestGossipKeyFile(t *testing.T) {
	dir := t.TempDir()
	keys := [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 16)}
	path := filepath.Join(dir, "gossip.keys")
	if err := WriteGossipKeys(path, keys); err != nil {
		t.Fatal(err)
	}
	got, err := ReadGossipKeys(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], keys[0]) || !bytes.Equal(got[1], keys[1]) {
		t.Fatalf("read %x, want %x", got, keys)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadGossipKeys(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a file others can read: %v, want a refusal saying chmod 600", err)
	}
	for name, content := range map[string]string{
		"empty":      "# no key\n\n",
		"not-base64": "not base64!\n",
		"short":      "c2hvcnQ=\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadGossipKeys(p); err == nil {
			t.Errorf("%s: read without error", name)
		}
	}
}
