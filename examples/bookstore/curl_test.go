package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/internal/freeport"
)

// TestCurlSession drives the example with the real curl binary and its
// cookie jar: a session across calls, across a kill -9 and restart of the
// whole shop, a tampered cookie refused with its status, and checkout
// ending the back ends' sessions (their cookies deleted), and a restart
// with another key file: one error, then a new cart.
func TestCurlSession(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("curl is not installed; .ci/run installs it")
		}
		t.Skip("curl is not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bookstore")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	keys := filepath.Join(dir, "keys.json")
	ring, _ := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err := scone.WriteKeyFile(keys, ring); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	base := "http://" + addr + "/shop"
	jar := filepath.Join(dir, "jar")

	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "-http", addr, "-keys", keys)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitHTTP(t, base+"/books")
		return cmd
	}
	curlJSON := func(args ...string) (int, map[string]any) {
		t.Helper()
		args = append([]string{"-s", "-c", jar, "-b", jar, "-w", "\n%{http_code}"}, args...)
		out, err := exec.Command(curl, args...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		body, code, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if i := strings.LastIndexByte(string(out), '\n'); i >= 0 {
			body, code = strings.TrimSpace(string(out[:i])), strings.TrimSpace(string(out[i+1:]))
		}
		var m map[string]any
		json.Unmarshal([]byte(body), &m)
		var status int
		fmt.Sscan(code, &status)
		return status, m
	}
	quantity := func(v map[string]any, isbn string) float64 {
		lines, _ := v["lines"].([]any)
		for _, l := range lines {
			l := l.(map[string]any)
			if l["book"].(map[string]any)["isbn"] == isbn {
				return l["quantity"].(float64)
			}
		}
		return 0
	}

	shop := start()
	const dune, neuromancer = "9780441013593", "9780441569595"
	if code, _ := curlJSON("-X", "POST", "-d", `{"isbn":"`+dune+`","quantity":2}`, base+"/cart/items"); code != 200 {
		t.Fatalf("add: %d", code)
	}
	if code, _ := curlJSON("-X", "POST", "-d", `{"isbn":"`+neuromancer+`","quantity":1}`, base+"/cart/items"); code != 200 {
		t.Fatalf("add: %d", code)
	}
	cookies, _ := os.ReadFile(jar)
	for _, name := range []string{"scone-bookstore.v1.Gateway", "scone-bookstore.v1.Cart", "scone-bookstore.v1.Inventory"} {
		if !bytes.Contains(cookies, []byte(name)) {
			t.Fatalf("the jar lacks %s:\n%s", name, cookies)
		}
	}

	// kill -9 the whole shop and start it again: the cart is in the jar.
	shop.Process.Kill()
	shop.Wait()
	shop = start()
	defer func() { shop.Process.Kill(); shop.Wait() }()
	code, v := curlJSON(base + "/cart")
	if code != 200 || quantity(v, dune) != 2 || quantity(v, neuromancer) != 1 || v["reserved"] != float64(3) {
		t.Fatalf("after the restart: %d %v", code, v)
	}

	// A tampered cookie: refused with its code (the gateway's SCONE
	// bundles the cart's: bundle_mismatch), and the jar's session intact.
	cookies, _ = os.ReadFile(jar) // the newest versions: older ones were spent
	tampered := tamperCookie(t, cookies, "scone-bookstore.v1.Cart")
	bad := filepath.Join(dir, "bad-jar")
	os.WriteFile(bad, tampered, 0o600)
	out, _ := exec.Command(curl, "-s", "-i", "-b", bad, base+"/cart").Output()
	if !bytes.Contains(out, []byte("409 Conflict")) || !bytes.Contains(out, []byte(`"code":"bundle_mismatch"`)) {
		t.Fatalf("tampered cookie:\n%s", out)
	}
	if code, v := curlJSON(base + "/cart"); code != 200 || quantity(v, dune) != 2 {
		t.Fatalf("the good jar after the refusal: %d %v", code, v)
	}

	// Checkout ends the cart's and inventory's sessions: their cookies are
	// emptied (and expire within a second); the gateway's stays.
	if code, o := curlJSON("-X", "POST", base+"/checkout"); code != 200 || len(o["lines"].([]any)) != 2 {
		t.Fatalf("checkout: %d %v", code, o)
	}
	cookies, _ = os.ReadFile(jar)
	values := jarValues(cookies)
	if values["scone-bookstore.v1.Cart"] != "" || values["scone-bookstore.v1.Inventory"] != "" || values["scone-bookstore.v1.Gateway"] == "" {
		t.Fatalf("jar after checkout:\n%s", cookies)
	}
	if code, v := curlJSON(base + "/cart"); code != 200 || len(v["lines"].([]any)) != 0 || v["operations"] != "3" {
		t.Fatalf("the cart after checkout: %d %v", code, v)
	}

	// The shop restarts with another key file: the jar's SCONEs no longer
	// open. The page and the catalog hold no state and still answer; the
	// cart fails once with its code, and that answer empties the cookies,
	// so the next request starts a new cart.
	if code, _ := curlJSON("-X", "POST", "-d", `{"isbn":"`+dune+`","quantity":1}`, base+"/cart/items"); code != 200 {
		t.Fatalf("add: %d", code)
	}
	shop.Process.Kill()
	shop.Wait()
	ring2, _ := scone.NewKeyRing(2, scone.GenerateKey(2, time.Now()))
	if err := scone.WriteKeyFile(keys, ring2); err != nil {
		t.Fatal(err)
	}
	shop = start()
	for _, page := range []string{base + "/", base + "/books"} {
		if code, _ := curlJSON(page); code != 200 {
			t.Fatalf("%s with SCONEs of the old key: %d", page, code)
		}
	}
	if code, v := curlJSON(base + "/cart"); code != 401 || v["code"] != "unknown_key" {
		t.Fatalf("the cart with SCONEs of the old key: %d %v", code, v)
	}
	cookies, _ = os.ReadFile(jar)
	for name, value := range jarValues(cookies) {
		if strings.HasPrefix(name, "scone-") && value != "" {
			t.Fatalf("the error left cookie %s in the jar:\n%s", name, cookies)
		}
	}
	if code, v := curlJSON(base + "/cart"); code != 200 || len(v["lines"].([]any)) != 0 || v["operations"] != "0" {
		t.Fatalf("the cart after the error: %d %v", code, v)
	}
}

// TestCurlReplayRefused: with the real curl and its cookie jar, replaying
// an older jar after a newer change is refused (409, rolled_back) and the
// newer cart is unchanged; a jar missing the cart's cookie gets an error
// (bundle_mismatch), not a 200 with an empty cart.
func TestCurlReplayRefused(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bookstore")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	keys := filepath.Join(dir, "keys.json")
	ring, _ := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err := scone.WriteKeyFile(keys, ring); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	base := "http://" + addr + "/shop"
	cmd := exec.Command(bin, "-http", addr, "-keys", keys)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	waitHTTP(t, base+"/books")

	jar := filepath.Join(dir, "jar")
	call := func(jar string, args ...string) (int, map[string]any) {
		t.Helper()
		args = append([]string{"-s", "-c", jar, "-b", jar, "-w", "\n%{http_code}"}, args...)
		out, err := exec.Command(curl, args...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		i := bytes.LastIndexByte(out, '\n')
		var m map[string]any
		json.Unmarshal(bytes.TrimSpace(out[:i]), &m)
		var status int
		fmt.Sscan(string(out[i+1:]), &status)
		return status, m
	}
	const dune, neuromancer = "9780441013593", "9780441569595"
	add := func(jar, isbn string) (int, map[string]any) {
		return call(jar, "-X", "POST", "-d", `{"isbn":"`+isbn+`","quantity":1}`, base+"/cart/items")
	}
	if code, _ := add(jar, dune); code != 200 {
		t.Fatalf("add: %d", code)
	}
	old, _ := os.ReadFile(jar)
	if code, _ := add(jar, neuromancer); code != 200 {
		t.Fatalf("add: %d", code)
	}
	_, newer := call(jar, base+"/cart")

	// The older jar, replayed: its versions were spent.
	replay := filepath.Join(dir, "old-jar")
	os.WriteFile(replay, old, 0o600)
	if code, v := call(replay, base+"/cart/items/"+dune, "-X", "DELETE"); code != 409 || v["code"] != "rolled_back" {
		t.Fatalf("replayed jar: %d %v, want 409 rolled_back", code, v)
	}
	code, v := call(jar, base+"/cart")
	if code != 200 || len(v["lines"].([]any)) != 2 || v["reserved"] != newer["reserved"] {
		t.Fatalf("the newer cart after the replay: %d %v, want %v", code, v, newer)
	}

	// A jar without the cart's cookie.
	cookies, _ := os.ReadFile(jar)
	var kept []string
	for _, l := range strings.Split(string(cookies), "\n") {
		if !strings.Contains(l, "scone-bookstore.v1.Cart\t") {
			kept = append(kept, l)
		}
	}
	missing := filepath.Join(dir, "missing-jar")
	os.WriteFile(missing, []byte(strings.Join(kept, "\n")), 0o600)
	if code, v := call(missing, base+"/cart"); code != 409 || v["code"] != "bundle_mismatch" {
		t.Fatalf("jar without the cart's cookie: %d %v, want 409 bundle_mismatch", code, v)
	}
}

// jarValues maps the cookie names of a curl cookie jar to their values.
func jarValues(jar []byte) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(string(jar), "\n") {
		if f := strings.Split(l, "\t"); len(f) == 7 {
			out[f[5]] = f[6]
		}
	}
	return out
}

// tamperCookie changes one character near the end of a cookie's value in a
// curl cookie jar (in the sealed part, not the header).
func tamperCookie(t *testing.T, jar []byte, name string) []byte {
	lines := strings.Split(string(jar), "\n")
	for i, l := range lines {
		f := strings.Split(l, "\t")
		if len(f) == 7 && f[5] == name {
			v := []byte(f[6])
			j := len(v) - 5
			if v[j] == 'A' {
				v[j] = 'B'
			} else {
				v[j] = 'A'
			}
			f[6] = string(v)
			lines[i] = strings.Join(f, "\t")
			return []byte(strings.Join(lines, "\n"))
		}
	}
	t.Fatalf("no cookie %s in the jar", name)
	return nil
}

// freeAddr returns a loopback address to start a process on
// (internal/freeport: nothing else takes it before the process binds it).
func freeAddr(t *testing.T) string {
	addr, err := freeport.Addr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// waitHTTP waits until url answers, up to 20 s.
func waitHTTP(t *testing.T, url string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for ctx.Err() == nil {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s did not answer", url)
}
