package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/scone-project/scone"
)

// chromium returns the path of a Chromium (or Chrome) binary. Without one
// the test is skipped, except in CI, where .ci/run installs it.
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no Chromium on the PATH; .ci/run installs the Debian package chromium")
	}
	t.Skip("no Chromium on the PATH (apt-get install chromium)")
	return ""
}

// TestShopPage uses the shop's page (GET /shop/ of the whole shop, run as
// `bookstore -http`) in headless Chromium as a shopper would: it adds
// books and checks out, and sees the order confirmed; then the shop is
// killed, and a click says the shop cannot be reached and the cart is
// safe; the shop is started again, and the next click carries on with the
// cart the browser's cookies kept.
func TestShopPage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser")
	}
	browser := chromium(t)
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
	base := "http://" + addr + "/shop/"
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "-http", addr, "-keys", keys)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitHTTP(t, base+"books")
		return cmd
	}
	shop := start()
	defer func() {
		if shop != nil {
			shop.Process.Kill()
			shop.Wait()
		}
	}()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	// page reads what the shopper sees.
	type page struct {
		Notice, Error, Cart, Summary string
		NoticeShown, ErrorShown      bool
	}
	read := func() page {
		t.Helper()
		p, err := chromedp.Run(ctx, chromedp.Evaluate[page](`(() => {
			const text = (id) => document.getElementById(id).textContent;
			const shown = (id) => document.getElementById(id).offsetParent !== null;
			return {Notice: text("notice"), Error: text("error"), Cart: document.getElementById("cart").innerText,
				Summary: text("summary"), NoticeShown: shown("notice"), ErrorShown: shown("error")};
		})()`))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// waitFor waits until the page script expression cond holds.
	waitFor := func(what, cond string) page {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingTimeout(15*time.Second))); err != nil {
			t.Fatalf("waiting for %s: %v; the page shows %+v", what, err, read())
		}
		return read()
	}
	click := func(sel string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
			t.Fatalf("clicking %s: %v", sel, err)
		}
	}
	const (
		addFirst   = `#books tr:nth-child(1) button`
		addSecond  = `#books tr:nth-child(2) button`
		cartLines  = `document.querySelectorAll("#cart button").length`
		errorText  = `document.getElementById("error").textContent`
		noticeText = `document.getElementById("notice").textContent`
	)

	if err := chromedp.Do(ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS(addFirst))); err != nil {
		t.Fatalf("loading %s: %v", base, err)
	}
	click(addFirst)
	waitFor("one line in the cart", cartLines+` === 1`)
	click(addFirst)
	waitFor("two copies of the first book", `document.getElementById("summary").textContent.includes("2 copies reserved")`)
	click(addSecond)
	waitFor("two lines in the cart", cartLines+` === 2`)

	// Checkout: the confirmation is shown, and stays after the cart is
	// read again; the cart is empty.
	click(`#checkout`)
	waitFor("the checkout's confirmation", noticeText+`.includes("ordered")`)
	p := waitFor("the cart emptied", `document.getElementById("cart").innerText.trim() === "empty"`)
	if want := "Thank you: ordered 3 copies of 2 titles, total "; !strings.HasPrefix(p.Notice, want) || !p.NoticeShown {
		t.Fatalf("after checkout the page shows %+v, want a visible notice starting %q", p, want)
	}
	if p.Error != "" || p.ErrorShown {
		t.Fatalf("after checkout the error line shows %q", p.Error)
	}

	// A new cart; then the shop goes down (kill -9) and the shopper clicks.
	click(addSecond)
	p = waitFor("a new cart", cartLines+` === 1`)
	if p.Notice != "" {
		t.Errorf("the confirmation is still shown after the next click: %q", p.Notice)
	}
	before := p.Cart
	shop.Process.Kill()
	shop.Wait()
	shop = nil
	click(addFirst)
	const offline = "Cannot reach the shop; your cart is safe in your browser's cookies — try again."
	p = waitFor("the offline message", errorText+` !== ""`)
	if p.Error != offline || !p.ErrorShown {
		t.Fatalf("a click with the shop down shows %+v, want the error %q", p, offline)
	}
	if p.Cart != before {
		t.Errorf("the cart changed while the shop was down: %q, was %q", p.Cart, before)
	}

	// The shop comes back: the same click now works, on the cart the
	// cookies kept, and the message goes.
	shop = start()
	click(addFirst)
	p = waitFor("the cart after the restart", cartLines+` === 2`)
	if p.Error != "" || p.ErrorShown {
		t.Fatalf("after the restart the page shows %+v", p)
	}
	if !strings.Contains(p.Summary, "2 copies reserved") {
		t.Errorf("after the restart the summary is %q, want 2 copies reserved", p.Summary)
	}
}
