package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scone-project/scone"
)

func TestKeysCommand(t *testing.T) {
	file := filepath.Join(t.TempDir(), "keys.json")
	var out bytes.Buffer
	steps := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"keygen", "--out", file, "--id", "1"}, 0, "key 1, primary"},
		{[]string{"keys", "add", "--file", file}, 0, "added key 2"},
		{[]string{"keys", "add", "--file", file, "--id", "2"}, 1, "duplicate"},
		{[]string{"keys", "retire", "--file", file, "--id", "1"}, 1, "is the primary key"},
		{[]string{"keys", "promote", "--file", file, "--id", "9"}, 1, "no key with ID 9"},
		{[]string{"keys", "promote", "--file", file, "--id", "2"}, 0, "key 2 is the primary"},
		{[]string{"keys", "retire", "--file", file, "--id", "1", "--after", "0s"}, 0, "key 1 stops opening"},
		{[]string{"keys", "list", "--file", file}, 0, "(prune it)"},
		{[]string{"keys", "prune", "--file", file}, 0, "removed 1 retired key(s)"},
		{[]string{"keys", "rotate", "--file", file}, 1, `unknown keys command "rotate"`},
		{[]string{"keys", "list"}, 1, "--file is required"},
		{[]string{"keys", "list", "--file", file + ".missing"}, 1, "no such file"},
	}
	for _, s := range steps {
		out.Reset()
		if code := run(s.args, &out, &out); code != s.code || !strings.Contains(out.String(), s.want) {
			t.Fatalf("scone %v: exit %d, want %d with %q:\n%s", s.args, code, s.code, s.want, out.String())
		}
	}
	ring, err := scone.ReadKeyFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if keys := ring.Keys(); len(keys) != 1 || keys[0].ID != 2 || !keys[0].Primary {
		t.Fatalf("after the rotation the file holds %+v, want key 2 alone, primary", keys)
	}
}

// TestKeygenRandomIDs: two key files made by keygen never share a key ID,
// so a SCONE that meets the wrong key file fails as unknown_key.
func TestKeygenRandomIDs(t *testing.T) {
	dir := t.TempDir()
	ids := map[uint32]bool{}
	for i := range 8 {
		file := filepath.Join(dir, fmt.Sprintf("keys%d.json", i))
		var out bytes.Buffer
		if code := run([]string{"keygen", "--out", file}, &out, &out); code != 0 {
			t.Fatal(out.String())
		}
		ring, err := scone.ReadKeyFile(file)
		if err != nil {
			t.Fatal(err)
		}
		ids[ring.Primary()] = true
	}
	if len(ids) != 8 {
		t.Fatalf("8 key files share IDs: %v", ids)
	}
	a, b := filepath.Join(dir, "keys0.json"), filepath.Join(dir, "keys1.json")
	ringA, _ := scone.ReadKeyFile(a)
	ringB, _ := scone.ReadKeyFile(b)
	sa, _ := scone.NewSealer(ringA)
	sb, _ := scone.NewSealer(ringB)
	want := scone.Expect{Service: "cart"}
	st, err := sa.Restore(t.Context(), nil, want, "/")
	if err != nil {
		t.Fatal(err)
	}
	st.SetData([]byte("x"))
	_, tok, err := sa.Commit(nil, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Restore(t.Context(), tok, want, "/"); scone.CodeOf(err) != scone.CodeUnknownKey {
		t.Fatalf("a SCONE opened with another key file: %v, want unknown_key", err)
	}
}
