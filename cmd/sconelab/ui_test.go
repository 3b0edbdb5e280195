package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "TestWebView: also write the screenshot to docs/webview.png")

// syncBuffer is a bytes.Buffer safe for one writer and readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

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

// TestWebView drives the demo's web view in headless Chromium: it loads the
// page, checks that its numbers are labelled and its SCONEs column
// explained, finds the topology, clicks "kill" on a cart server, sees it down,
// and sees the sessions carry on with nothing lost. It saves a screenshot
// (webview.png in the test's artifact directory; -update-screenshot also
// writes docs/webview.png).
func TestWebView(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser")
	}
	browser := chromium(t)
	var out syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run([]string{"demo", "--ui=127.0.0.1:0", "--duration=12s", "--kill-every=0", "--sessions=8", "--seed=9"}, &out, &out)
	}()
	var url string
	for deadline := time.Now().Add(20 * time.Second); url == ""; {
		if m := regexp.MustCompile(`web view: (http://\S+)`).FindStringSubmatch(out.String()); m != nil {
			url = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("the demo did not print its web view's address:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.DisableGPU, chromedp.WindowSize(1280, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

	css := func(sel string) chromedp.CSS { return chromedp.CSS(sel) }
	if err := chromedp.Do(ctx,
		chromedp.Navigate(url),
		chromedp.WaitVisible(css(`.member[data-name="cart-1"]`)),
	); err != nil {
		t.Fatalf("loading %s: %v\n%s", url, err, out.String())
	}
	groups, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(".group.server").length`))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#sessions tbody tr").length`))
	if err != nil {
		t.Fatal(err)
	}
	if groups != 3 || rows != 8 {
		t.Fatalf("the page shows %d tiers and %d sessions, want 3 and 8", groups, rows)
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(css(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	calls := func() int {
		n, _ := strconv.Atoi(text("#calls"))
		return n
	}
	sessionCalls := func() []int {
		t.Helper()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[[]int](
			`[...document.querySelectorAll("#sessions tbody tr")].map(tr => parseInt(tr.children[4].textContent))`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The numbers are labelled, and the SCONEs column explained.
	if sum := text("#summary"); !regexp.MustCompile(`; running for \d+ s$`).MatchString(sum) {
		t.Errorf("the summary %q does not say how long the demo has run", sum)
	}
	if v := text("#versions"); !strings.Contains(v, "how many times this session's state was sealed; it only grows") {
		t.Errorf("the page explains versions as %q", v)
	}
	if e := text("#ended"); !strings.Contains(e, "checkout ends the cart's and inventory's sessions") {
		t.Errorf("the page explains ended sessions as %q", e)
	}
	// Each SCONE shows what it records of the call that sealed it: the
	// operation, its outcome and the endpoint (opened with the demo's key).
	cells, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`[...document.querySelectorAll("#sessions tbody tr")].map(tr => tr.children[2].textContent).join("\n")`))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`Gateway v\d+ \(/bookstore\.v1\.Gateway/\w+: ok at 127\.0\.0\.1:\d+\)`).MatchString(cells) {
		t.Errorf("the SCONEs column does not show the endpoint and status of the gateway's SCONEs:\n%s", cells)
	}
	before, perBefore := calls(), sessionCalls()
	// The page re-renders twice a second: click through the DOM of the
	// moment rather than a node that may be replaced.
	clicked, err := chromedp.Run(ctx, chromedp.Evaluate[bool](
		`(() => { const b = document.querySelector('button[data-kill="cart-1"]'); if (b) b.click(); return !!b; })()`))
	if err != nil || !clicked {
		t.Fatalf("clicking kill on cart-1: clicked=%v %v", clicked, err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(css(`.member.down[data-name="cart-1"]`))); err != nil {
		t.Fatalf("cart-1 not shown down after the click: %v", err)
	}
	time.Sleep(2 * time.Second) // the sessions go on without cart-1
	after, perAfter := calls(), sessionCalls()
	lost, errs := text("#lost"), text("#errors")
	lostRows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#sessions td.lost-n").length`))
	if err != nil {
		t.Fatal(err)
	}
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if after <= before+100 {
		t.Errorf("calls went from %d to %d after the kill: the sessions did not carry on", before, after)
	}
	if len(perAfter) != len(perBefore) {
		t.Fatalf("%d sessions before the kill, %d after", len(perBefore), len(perAfter))
	}
	for i := range perAfter {
		if perAfter[i] <= perBefore[i] {
			t.Errorf("session #%d made no call after the kill (%d → %d)", i+1, perBefore[i], perAfter[i])
		}
	}
	if lost != "0" || lostRows != 0 {
		t.Errorf("the page shows lost=%s and %d sessions with losses", lost, lostRows)
	}
	t.Logf("calls %d → %d across the kill; failed calls by code: %s (calls in flight on cart-1)", before, after, errs)
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "webview.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
	if *updateScreenshot {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "webview.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case code := <-done:
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		if code != 0 || !strings.HasSuffix(lines[len(lines)-1], "lost=0") {
			t.Fatalf("demo exited %d:\n%s", code, out.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the demo did not end")
	}
}
