package relay

import (
	"strings"
	"testing"
)

// TestRetries: which methods a relay re-sends, and which patterns a
// Config may name them by.
func TestRetries(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		method   string
		kd       kind
		patterns []string
		want     bool
	}{
		{"/x.Shelf/Get", kindUnary | kindIdempotent, nil, true},
		{"/x.Shelf/Watch", kindIdempotent, nil, true},
		{"/x.Shelf/Put", kindUnary, nil, false},
		{"/x.Shelf/Put", kindUnary, []string{"/x.Shelf/"}, true},
		{"/x.Shelf/Put", kindStream, []string{"/x.Shelf/Put"}, true},
		{"/x.Shelf/Put", kindUnary, []string{"/x.Shelf/Get", "/x.Shelves/"}, false},
		{"/x.Shelf/PutAll", kindUnary, []string{"/x.Shelf/Put"}, false},
		{"/x.ShelfAdmin/Put", kindUnary, []string{"/x.Shelf/"}, false},
	} {
		if got := retries(tc.method, tc.kd, tc.patterns); got != tc.want {
			t.Errorf("retries(%s, %b, %v) = %v, want %v", tc.method, tc.kd, tc.patterns, got, tc.want)
		}
	}
	for p, want := range map[string]bool{
		"/x.Shelf/": true, "/x.Shelf/Put": true, "/Shelf/": true,
		"x.Shelf/Put": false, "/x.Shelf": false, "/x.Shelf/Put/": false, "/x..Shelf/": false, "//": false, "/x.Shelf/P-t": false, "": false,
	} {
		if got := validRetryPattern(p); got != want {
			t.Errorf("validRetryPattern(%q) = %v, want %v", p, got, want)
		}
	}
	cfg := DefaultConfig()
	cfg.Upstreams = []string{"127.0.0.1:1"}
	cfg.RetryMethods = []string{"bookstore.v1.Gateway"}
	if err := cfg.validate(); err == nil || !strings.Contains(err.Error(), "bookstore.v1.Gateway") {
		t.Errorf("a pattern without slashes: %v", err)
	}
	cfg.RetryMethods, cfg.RetryAttempts = nil, 6
	if err := cfg.validate(); err == nil {
		t.Error("6 attempts: accepted, over gRPC's limit of 5")
	}
}

// TestRetryServiceConfig: the retry policy the relay gives gRPC, whose
// backoff doubles up to the last re-send's.
func TestRetryServiceConfig(t *testing.T) {
	t.Parallel()
	sc := retryServiceConfig(4, DefaultRetryBackoff)
	for _, want := range []string{`"maxAttempts": 4`, `"initialBackoff": "0.050s"`, `"maxBackoff": "0.200s"`, `"UNAVAILABLE"`} {
		if !strings.Contains(sc, want) {
			t.Errorf("service config lacks %s:\n%s", want, sc)
		}
	}
}
