package scone

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKeyFileReadableByOthersRefused: a key file that group or others may
// read (or write) is refused before its secrets are used, with an error
// that names the fix, as ssh does for a private key.
func TestKeyFileReadableByOthersRefused(t *testing.T) {
	t.Parallel()
	ring, err := NewKeyRing(7, GenerateKey(7, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660, 0o606, 0o700 | 0o004} {
		t.Run(fmt.Sprintf("mode=%#o", mode), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "keys.json")
			if err := WriteKeyFile(path, ring); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := ReadKeyFile(path)
			if err == nil {
				t.Fatalf("a key file with mode %#o was accepted", mode)
			}
			if msg := err.Error(); !strings.Contains(msg, "chmod 600 "+path) || !strings.Contains(msg, fmt.Sprintf("%#o", mode.Perm())) {
				t.Errorf("error %q does not name the mode and the fix", msg)
			}
			before := ring.Primary()
			if err := ReloadKeyFile(ring, path); err == nil || ring.Primary() != before {
				t.Errorf("ReloadKeyFile of a mode %#o file: err %v", mode, err)
			}
		})
	}
	// 0600 and 0400 are private to the owner.
	for _, mode := range []os.FileMode{0o600, 0o400} {
		path := filepath.Join(t.TempDir(), "keys.json")
		if err := WriteKeyFile(path, ring); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadKeyFile(path); err != nil {
			t.Errorf("mode %#o: %v", mode, err)
		}
	}
}

// TestKeySecretNeverPrinted: no formatter, JSON encoder or slog handler
// prints a key's secret, in any of the encodings a log could use.
func TestKeySecretNeverPrinted(t *testing.T) {
	t.Parallel()
	k := GenerateKey(42, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC))
	k.RetireAt = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	forms := map[string]string{}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%X", "%o", "%b", "%08v"} {
		forms["fmt "+verb] = fmt.Sprintf(verb, k)
		forms["fmt "+verb+" of a pointer"] = fmt.Sprintf(verb, &k)
		forms["fmt "+verb+" of a slice"] = fmt.Sprintf(verb, []Key{k})
		forms["fmt "+verb+" in a struct"] = fmt.Sprintf(verb, struct{ K Key }{k})
	}
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	forms["json"] = string(b)
	b, _ = json.Marshal(map[string]any{"key": k, "keys": []Key{k}, "ptr": &k})
	forms["json nested"] = string(b)
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("rotated", "key", k, "ptr", &k)
	slog.New(slog.NewTextHandler(&buf, nil)).Info("rotated", "key", k, "keys", []Key{k})
	forms["slog"] = buf.String()

	secrets := []string{
		string(k.Secret[:]),
		base64.StdEncoding.EncodeToString(k.Secret[:]),
		base64.RawURLEncoding.EncodeToString(k.Secret[:]),
		hex.EncodeToString(k.Secret[:]),
		strings.ToUpper(hex.EncodeToString(k.Secret[:])),
		fmt.Sprint(k.Secret[:4]), // decimal bytes: "[12 200 3 9]"
		fmt.Sprintf("%o", k.Secret[:4]),
	}
	for name, out := range forms {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s prints the secret: %s", name, out)
			}
		}
	}
	if !strings.Contains(forms["json"], `"id":42`) || !strings.Contains(forms["slog"], "42") {
		t.Errorf("the key's ID should still show: %s / %s", forms["json"], forms["slog"])
	}
}
