package sconehttp_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/examples/bookstore/shop"
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

// seen is what a page script saw: the status of its request, the page's
// document.cookie, and every response header it could read.
type seen struct {
	Status  int      `json:"status"`
	Cookie  string   `json:"cookie"`
	Headers []string `json:"headers"`
}

// TestPageScriptCannotReadToken loads the bookstore's page in headless
// Chromium, puts books in the cart, and then runs script in the page, as
// an injected script (XSS) would, trying to obtain a SCONE: from
// document.cookie, and from the response headers of fetch and
// XMLHttpRequest calls that send an empty Scone header (asking for the
// reply in headers) with the cookies. After each, none of the browser's
// SCONE cookies (read through the DevTools protocol) is in what the script
// saw.
func TestPageScriptCannotReadToken(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser")
	}
	browser := chromium(t)
	ring, err := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := scone.NewSealer(ring)
	if err != nil {
		t.Fatal(err)
	}
	d, err := shop.Deploy(sealer, 1, shop.WithHTTP())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	base := "http://" + d.Replicas(shop.RoleGateway)[0].HTTPAddr + "/shop/"

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

	// The user adds two books through the page.
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base),
		chromedp.WaitVisible(chromedp.CSS(`#books tr button`)),
		chromedp.Click(chromedp.CSS(`#books tr:nth-child(1) button`)),
		chromedp.WaitVisible(chromedp.CSS(`#cart button`)),
		chromedp.Click(chromedp.CSS(`#books tr:nth-child(2) button`)),
		chromedp.Poll[chromedp.Void](`document.querySelectorAll("#cart button").length === 2`),
	); err != nil {
		t.Fatal(err)
	}

	const collect = `
		const lines = [];
		r.headers.forEach((v, k) => lines.push(k + ": " + v));
		return {status: r.status, cookie: document.cookie, headers: lines};`
	attacks := map[string]string{
		"fetch GET": `(async () => {
			const r = await fetch("/shop/cart", {credentials: "include", headers: {"Scone": ""}});` + collect + `})()`,
		"fetch POST": `(async () => {
			const r = await fetch("/shop/cart/items", {method: "POST", credentials: "include",
				headers: {"Scone": "", "Content-Type": "application/json"},
				body: JSON.stringify({isbn: "9780441013593", quantity: 1})});` + collect + `})()`,
		"XMLHttpRequest": `new Promise((resolve) => {
			const x = new XMLHttpRequest();
			x.open("GET", "/shop/cart");
			x.withCredentials = true;
			x.setRequestHeader("Scone", "");
			x.onload = () => resolve({status: x.status, cookie: document.cookie,
				headers: x.getAllResponseHeaders().trim().split("\r\n")});
			x.send();
		})`,
	}
	for name, script := range attacks {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[seen](script, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base}})
		if err != nil {
			t.Fatal(err)
		}
		var tokens int
		for _, c := range cookies.Cookies {
			if !strings.HasPrefix(c.Name, "scone-") || c.Value == "" {
				continue
			}
			tokens++
			if !c.HTTPOnly {
				t.Errorf("cookie %s is not HttpOnly", c.Name)
			}
			all := got.Cookie + "\n" + strings.Join(got.Headers, "\n")
			if strings.Contains(all, c.Value) {
				t.Errorf("%s: the script read the SCONE of cookie %s", name, c.Name)
			}
		}
		if got.Status != 200 || tokens != 3 {
			t.Fatalf("%s: status %d, %d SCONE cookies in the browser (want 200, 3)", name, got.Status, tokens)
		}
		for _, h := range got.Headers {
			if strings.HasPrefix(strings.ToLower(h), "scone") {
				t.Errorf("%s: the script read the response header %q", name, h)
			}
		}
		if strings.Contains(got.Cookie, "scone") {
			t.Errorf("%s: document.cookie is %q", name, got.Cookie)
		}
	}
}
