package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/scone-project/scone"
	"github.com/scone-project/scone/examples/bookstore/shop"
	"github.com/scone-project/scone/internal/daemontest"
)

// TestRelayCommandHTTP runs "scone relay --transport=http" in front of the
// bookstore's HTTP fronts: a plain HTTP client, named by a header, keeps
// its cart across requests while receiving no SCONE, and the relay's
// memory holds it.
func TestRelayCommandHTTP(t *testing.T) {
	ring, _ := scone.NewKeyRing(1, scone.GenerateKey(1, time.Now()))
	sealer, _ := scone.NewSealer(ring)
	d, err := shop.Deploy(sealer, 2, shop.WithHTTP())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var ups []string
	for _, r := range d.Replicas(shop.RoleGateway) {
		ups = append(ups, r.HTTPAddr)
	}
	listen, admin := daemontest.Addr(t), daemontest.Addr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- runRelay(ctx, []string{"--transport=http", "--listen=" + listen, "--admin=" + admin,
			"--upstream=" + strings.Join(ups, ","), "--identity-header=scone-client"}, &out)
	}()
	daemontest.WaitFor(t, "http://"+admin+"/healthz")

	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	send := func(method, path, body string) (*http.Response, string) {
		req, _ := http.NewRequest(method, "http://"+listen+path, strings.NewReader(body))
		req.Header.Set("Scone-Client", "alice")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	for range 2 {
		if resp, b := send("POST", "/shop/cart/items", `{"isbn":"9780441013593","quantity":1}`); resp.StatusCode != 200 {
			t.Fatalf("add through the relay: %s %s", resp.Status, b)
		}
	}
	resp, b := send("GET", "/shop/cart", "")
	if resp.StatusCode != 200 || !strings.Contains(b, `"quantity":2`) {
		t.Fatalf("cart through scone relay --transport=http: %s %s", resp.Status, b)
	}
	if len(resp.Header.Values("Scone"))+len(resp.Cookies()) != 0 {
		t.Fatalf("the client got SCONEs: %v", resp.Header)
	}
	if body := daemontest.Get(t, "http://"+admin+"/metrics"); !strings.Contains(body, `scone_relay_requests_total{code="200"} 3`) {
		t.Errorf("/metrics does not count the 3 requests relayed:\n%.2000s", body)
	}
	if snap := daemontest.Get(t, "http://"+admin+"/debug/scone/snapshot"); !strings.Contains(snap, "in this relay's memory: 1 clients") {
		t.Errorf("/debug/scone/snapshot: %s", snap)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("relay ended with %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the relay did not stop")
	}
}
