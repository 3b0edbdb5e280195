package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/scone-project/scone/internal/bench"
	"github.com/scone-project/scone/internal/cli"
)

// Markers around the generated part of a Markdown file (--splice).
const (
	benchBegin = "<!-- bench:begin -->"
	benchEnd   = "<!-- bench:end -->"
)

const benchSummary = `Runs the same workload against every way of keeping session state, on
127.0.0.1: plain gRPC without state, a map in the server, a Redis session
store (GET + SET per call on a redis-server it starts), SCONE client mode,
client mode through nginx grpc_pass, relay mode (memory and JetStream
stores), cluster mode with k=2; and the same workload over net/http with a
cookie jar per session: plain net/http, the state in a plain cookie (no
crypto), sconehttp, gorilla/sessions' CookieStore and scs with its memory
store. Contenders alternate in rounds (A B C … A B C
…) so that a noisy machine's drift hits all alike; the table gives medians
over the rounds and per-round paired ratios. After the rounds, the heap
pass: each contender alone, its server-side memory growth over
--heap-sessions sessions. Before the rounds, the memory run: the heap after
--mem-sessions distinct sessions, the map against client mode.

redis-server and nginx are started from their Debian packages when
installed (apt-get install redis-server nginx); without them those
contenders are skipped.`

// runBench runs sconelab bench.
func runBench(ctx context.Context, args []string, stdout io.Writer) error {
	fs := cli.NewFlags("sconelab", "bench", stdout)
	fs.SetSummary(benchSummary)
	def := bench.DefaultConfig()
	quick := fs.Bool("quick", false, "a short run (under a minute): 2 rounds of 400ms, 3,000 sessions in the heap pass, 100,000 in the memory run; flags given explicitly still win")
	contenders := fs.String("contenders", "", "comma-separated contenders to run (default all): "+contenderNames())
	sizes := fs.String("sizes", "256,4096", "state sizes in bytes, comma-separated")
	callers := fs.Int("callers", def.Callers, "concurrent callers")
	rounds := fs.Int("rounds", def.Rounds, "rounds")
	duration := fs.Duration("duration", def.Duration, "length of each measured run (one contender, one size, one round)")
	warmup := fs.Duration("warmup", def.Warmup, "unmeasured run of each contender and size before the first round")
	sessionCalls := fs.Int("session-calls", def.SessionCalls, "mean calls per session")
	seed := fs.Uint64("seed", def.Seed, "seed of the session lengths")
	heapSessions := fs.Int64("heap-sessions", def.HeapSessions, "one-call sessions of the heap pass, per contender and size (0: no heap pass)")
	memSessions := fs.Int64("mem-sessions", bench.DefaultMemoryConfig().Sessions, "sessions in the memory run (0: no memory run)")
	out := fs.String("out", "", "directory to write the report to (bench.md and PNG plots)")
	splice := fs.String("splice", "", "Markdown file whose part between "+benchBegin+" and "+benchEnd+" is replaced by the report (needs --out, for the plots)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *quick {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, v := range map[string]string{"rounds": "2", "duration": "400ms", "warmup": "200ms", "heap-sessions": "3000", "mem-sessions": "100000"} {
			if _, env := os.LookupEnv(fs.EnvName(name)); !set[name] && !env {
				fs.Set(name, v)
			}
		}
	}
	cfg := def
	cfg.Callers, cfg.Rounds, cfg.Duration, cfg.Warmup = *callers, *rounds, *duration, *warmup
	cfg.SessionCalls, cfg.Seed, cfg.HeapSessions, cfg.Log = *sessionCalls, *seed, *heapSessions, os.Stderr
	var err error
	if cfg.Sizes, err = parseSizes(*sizes); err != nil {
		return err
	}
	if *contenders != "" {
		cfg.Contenders = strings.Split(*contenders, ",")
	}
	if *splice != "" && *out == "" {
		return errors.New("--splice needs --out (the plots are written there)")
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	command := "go run ./cmd/sconelab bench " + shellJoin(args)

	// The memory run goes first, in a process that has run nothing else.
	var mem []bench.MemoryResult
	if *memSessions > 0 {
		mc := bench.DefaultMemoryConfig()
		mc.Sessions, mc.Callers, mc.Log = *memSessions, cfg.Callers, os.Stderr
		if mem, err = bench.Memory(ctx, mc); err != nil {
			return interrupted(err)
		}
	}
	rep, err := bench.Bench(ctx, cfg)
	if err != nil {
		return interrupted(err)
	}
	fmt.Fprintln(stdout)
	bench.WriteText(stdout, rep, mem)
	if *out != "" {
		if err := writeBenchOut(*out, *splice, command, rep, mem); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", filepath.Join(*out, "bench.md"))
		if *splice != "" {
			fmt.Fprintf(stdout, "updated %s\n", *splice)
		}
	}
	return benchVerdict(stdout, rep, mem)
}

// benchVerdict fails the command when a call replied with a wrong state
// (lost or stale: a bug) or failed otherwise than Unavailable. Unavailable
// is a holder's typed answer when it cannot keep its promise in time (a
// cluster node overloaded): the session's state is not lost, and the
// table counts it under failed.
func benchVerdict(stdout io.Writer, rep *bench.Report, mem []bench.MemoryResult) error {
	var failed, unavailable, wrong int64
	for _, r := range rep.Runs {
		failed, unavailable, wrong = failed+r.Errors, unavailable+r.Unavailable, wrong+r.Wrong
	}
	for _, m := range rep.Heap {
		failed, unavailable, wrong = failed+m.Errors, unavailable+m.Unavailable, wrong+m.Wrong
	}
	for _, m := range mem {
		failed, unavailable, wrong = failed+m.Errors, unavailable+m.Unavailable, wrong+m.Wrong
	}
	if unavailable > 0 {
		fmt.Fprintf(stdout, "\nnote: %d calls failed with Unavailable (a holder could not keep the state in time; nothing lost)\n", unavailable)
	}
	if wrong > 0 || failed > unavailable {
		return fmt.Errorf("%d calls failed (%d of them otherwise than Unavailable) and %d replied with a wrong state (see the table's failed column)", failed, failed-unavailable, wrong)
	}
	return nil
}

// interrupted says so when err is the end of the command's context.
func interrupted(err error) error {
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted (every server it started is stopped)")
	}
	return err
}

func contenderNames() string {
	var names []string
	for _, c := range bench.Contenders() {
		names = append(names, c.Name)
	}
	return strings.Join(names, ",")
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < bench.MinSize || n > bench.MaxSize {
			return nil, fmt.Errorf("--sizes: %q is not a size in [%d, %d] bytes", f, bench.MinSize, bench.MaxSize)
		}
		out = append(out, n)
	}
	return out, nil
}

// shellJoin quotes args for a POSIX shell where needed.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=.,/:") == "" {
			q[i] = a
		} else {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(q, " ")
}

// writeBenchOut writes dir/bench.md and the plots, and splices the report
// into the file splice (if set) with the plots' paths relative to it.
func writeBenchOut(dir, splice, command string, rep *bench.Report, mem []bench.MemoryResult) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	plots, err := bench.WritePlots(dir, rep)
	if err != nil {
		return fmt.Errorf("drawing the plots: %w", err)
	}
	meta := bench.MarkdownMeta{Command: command, Machine: bench.Machine(), Plots: plots}
	var md bytes.Buffer
	bench.WriteMarkdown(&md, rep, mem, meta)
	if err := os.WriteFile(filepath.Join(dir, "bench.md"), md.Bytes(), 0o644); err != nil {
		return err
	}
	if splice == "" {
		return nil
	}
	rel, err := filepath.Rel(filepath.Dir(splice), dir)
	if err != nil {
		return err
	}
	meta.Plots = nil
	for _, p := range plots {
		meta.Plots = append(meta.Plots, bench.Plot{Path: filepath.ToSlash(filepath.Join(rel, p.Path)), Caption: p.Caption})
	}
	md.Reset()
	bench.WriteMarkdown(&md, rep, mem, meta)
	return spliceFile(splice, md.Bytes())
}

// spliceFile replaces what lies between the markers in file with text.
func spliceFile(file string, text []byte) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	i := bytes.Index(b, []byte(benchBegin))
	j := bytes.Index(b, []byte(benchEnd))
	if i < 0 || j < i {
		return fmt.Errorf("%s: no %s … %s section to replace", file, benchBegin, benchEnd)
	}
	var nb bytes.Buffer
	nb.Write(b[:i+len(benchBegin)])
	nb.WriteString("\n")
	nb.Write(text)
	nb.WriteString("\n")
	nb.Write(b[j:])
	return os.WriteFile(file, nb.Bytes(), 0o644)
}
