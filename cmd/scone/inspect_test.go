package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/hook"
	"github.com/scone-project/scone/internal/inspect"
)

func TestInspect(t *testing.T) {
	now := time.Now()
	ring, err := scone.NewKeyRing(7, scone.GenerateKey(7, now))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := scone.NewKeyRing(9, scone.GenerateKey(9, now))
	seal := func(at time.Time, sc scone.SCONE) []byte {
		t.Helper()
		s, err := scone.NewSealer(ring, scone.WithTTL(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		sc.IssuedAt, sc.Expires = at, at.Add(time.Hour)
		tok, err := hook.Seal(s, nil, &sc)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	valid := seal(now, scone.SCONE{Service: "shop.Cart", Scope: "/shop.Cart/", Version: 3, Object: "cart-1", Data: []byte("2 books")})
	tampered := bytes.Clone(valid)
	tampered[len(tampered)-1] ^= 1
	expired := seal(now.Add(-2*time.Hour), scone.SCONE{Service: "shop.Cart", Data: []byte("old")})
	bound := seal(now, scone.SCONE{Service: "shop.Cart", Client: "alice", Data: []byte("hers")})

	for _, tc := range []struct {
		name    string
		token   []byte
		ring    *scone.KeyRing
		client  string
		code    string // "" when it opens
		data    string
		expired bool
	}{
		{"header only", valid, nil, "", "", "", false},
		{"valid", valid, ring, "", "", "2 books", false},
		{"tampered", tampered, ring, "", "tampered", "", false},
		{"expired", expired, ring, "", "expired", "", true},
		{"unknown key", valid, other, "", "unknown_key", "", false},
		{"bound to another client", bound, ring, "bob", "wrong_client", "", false},
		{"bound to this client", bound, ring, "alice", "", "hers", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, err := inspect.Inspect(tc.token, tc.ring, tc.client, now)
			if err != nil {
				t.Fatal(err)
			}
			if in.Service != "shop.Cart" || in.KeyID != 7 || in.Size != len(tc.token) || in.Expired != tc.expired {
				t.Fatalf("header: %+v", in)
			}
			if in.Code != tc.code {
				t.Fatalf("code %q (%s), want %q", in.Code, in.Error, tc.code)
			}
			switch {
			case tc.ring == nil && in.Opened != nil:
				t.Fatal("opened without keys")
			case tc.data != "" && (in.Opened == nil || string(in.Opened.Data) != tc.data):
				t.Fatalf("opened %+v, want data %q", in.Opened, tc.data)
			case tc.code != "" && in.Opened != nil:
				t.Fatal("a SCONE that failed to open shows content")
			}
		})
	}
	if _, err := inspect.Inspect([]byte("not a scone"), ring, "", now); err == nil || !strings.Contains(err.Error(), "not a SCONE (malformed)") {
		t.Fatalf("garbage: %v", err)
	}
}

// TestInspectCommand runs the command on a SCONE given as text and as a
// file, with and without keys.
func TestInspectCommand(t *testing.T) {
	dir := t.TempDir()
	keys := filepath.Join(dir, "keys.json")
	var out bytes.Buffer
	if code := run([]string{"keygen", "--out", keys, "--id", "1"}, &out, &out); code != 0 {
		t.Fatalf("keygen: %s", out.String())
	}
	ring, err := scone.ReadKeyFile(keys)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := scone.NewSealer(ring)
	now := time.Now()
	tok, err := hook.Seal(s, nil, &scone.SCONE{Service: "shop.Cart", Scope: "/shop.Cart/", Version: 4, IssuedAt: now, Expires: now.Add(time.Hour), Data: []byte("3 books"),
		Endpoint: "10.0.0.5:7101", Status: "/shop.Cart/Add: ok"})
	if err != nil {
		t.Fatal(err)
	}
	text := scone.EncodeText(tok)
	file := filepath.Join(dir, "scone.bin")
	if err := os.WriteFile(file, tok, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, arg := range []string{text, file} {
		out.Reset()
		if code := run([]string{"inspect", "--keys", keys, arg}, &out, &out); code != 0 {
			t.Fatalf("inspect %s: exit %d\n%s", arg, code, out.String())
		}
		for _, want := range []string{"service   shop.Cart", "version   4", "open      ok, key 1", `data      7 bytes: "3 books"`,
			`endpoint  "10.0.0.5:7101"`, `status    "/shop.Cart/Add: ok"`} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("inspect output lacks %q:\n%s", want, out.String())
			}
		}
	}
	// A tampered SCONE: the code is printed, and the exit status is 1.
	bad := bytes.Clone(tok)
	bad[len(bad)-2] ^= 0x40
	out.Reset()
	if code := run([]string{"inspect", "--json", "--keys", keys, scone.EncodeText(bad)}, &out, &out); code != 1 {
		t.Fatalf("tampered: exit %d, want 1\n%s", code, out.String())
	}
	var in inspect.Inspection
	if err := json.NewDecoder(&out).Decode(&in); err != nil || in.Code != "tampered" || in.Opened != nil {
		t.Fatalf("tampered, JSON: %+v %v", in, err)
	}
	// Without keys, only the header, and success.
	out.Reset()
	if code := run([]string{"inspect", text}, &out, &out); code != 0 || strings.Contains(out.String(), "open ") {
		t.Fatalf("header only: exit %d\n%s", code, out.String())
	}
	if code := run([]string{"inspect", "garbage!"}, &out, &out); code != 1 {
		t.Fatalf("garbage: exit %d", code)
	}
}
