package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/scone-project/scone/internal/bench"
)

// TestBenchCommand runs a tiny sconelab bench with in-process contenders only
// and checks the table, the Markdown, the plots and the splice.
func TestBenchCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "bench")
	doc := filepath.Join(dir, "BENCHMARKS.md")
	const hand = "# Benchmarks\n\nhand-kept text\n\n"
	if err := os.WriteFile(doc, []byte(hand+benchBegin+"\nold run\n"+benchEnd+"\n\nmore hand-kept text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "--contenders=plain,map,client", "--sizes=64,512", "--callers=4",
		"--rounds=2", "--duration=150ms", "--warmup=0s", "--heap-sessions=200", "--mem-sessions=500", "--out", out, "--splice", doc}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	text := stdout.String()
	for _, want := range []string{"calls/s", "client ÷ plain", "client ÷ map", "64 B", "512 B", "map        500"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	md, err := os.ReadFile(filepath.Join(out, "bench.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(md), "go run ./cmd/sconelab bench --contenders=plain,map,client --sizes=64,512") ||
		!strings.Contains(string(md), "| client | 512 B |") || !strings.Contains(string(md), "](throughput.png)") {
		t.Errorf("bench.md:\n%s", md)
	}
	for _, name := range []string{"throughput.png", "latency-64.png", "latency-512.png"} {
		f, err := os.Open(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil || img.Bounds().Dx() < 100 {
			t.Errorf("%s: not a PNG plot (%v)", name, err)
		}
	}
	spliced, err := os.ReadFile(doc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(spliced)
	if !strings.HasPrefix(s, hand+benchBegin+"\n") || !strings.HasSuffix(s, benchEnd+"\n\nmore hand-kept text\n") ||
		strings.Contains(s, "old run") || !strings.Contains(s, "](bench/throughput.png)") {
		t.Errorf("spliced file:\n%s", s)
	}
}

func TestBenchFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--sizes=8"}, "--sizes"},
		{[]string{"bench", "--contenders=memcached", "--mem-sessions=0"}, `unknown contender "memcached"`},
		{[]string{"bench", "--splice=x.md"}, "--splice needs --out"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 1 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}

func TestBenchVerdict(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  bench.Run
		fail bool
	}{
		{"clean", bench.Run{Calls: 10}, false},
		{"unavailable only", bench.Run{Calls: 10, Errors: 2, Unavailable: 2}, false},
		{"other error", bench.Run{Calls: 10, Errors: 3, Unavailable: 2}, true},
		{"wrong state", bench.Run{Calls: 10, Wrong: 1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := benchVerdict(&out, &bench.Report{Runs: []bench.Run{tc.run}}, nil)
			if (err != nil) != tc.fail {
				t.Fatalf("verdict %v, want failure %v", err, tc.fail)
			}
			if tc.run.Unavailable > 0 && !strings.Contains(out.String(), "Unavailable") {
				t.Errorf("no note of the Unavailable calls: %q", out.String())
			}
		})
	}
}
