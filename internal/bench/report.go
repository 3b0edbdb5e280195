package bench

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// String formats a ratio as "median (min–max)", or "—" when it could not
// be formed.
func (r Ratio) String() string {
	if r.N == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f (%.2f–%.2f)", r.Median, r.Min, r.Max)
}

func fmtDur(d time.Duration) string {
	switch {
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	}
}

func fmtBytes(b float64) string {
	sign := "+"
	if b < 0 {
		sign, b = "−", -b
	}
	switch {
	case b >= 1<<20:
		return fmt.Sprintf("%s%.1f MiB", sign, b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%s%.0f KiB", sign, b/(1<<10))
	default:
		return fmt.Sprintf("%s%.0f B", sign, b)
	}
}

func fmtSize(n int) string {
	if n%1024 == 0 {
		return fmt.Sprintf("%d KiB", n/1024)
	}
	return fmt.Sprintf("%d B", n)
}

func fmtQPS(q float64) string { return fmt.Sprintf("%.0f", q) }

// table is the comparison as rows of cells, with its header.
func (rep *Report) table() [][]string {
	out := [][]string{{"contender", "state", "calls/s", "p50", "p99", "CPU/call", "heap/100k sessions", "÷ plain", "÷ Redis", "failed"}}
	for _, r := range rep.Rows() {
		failed := "0"
		if r.Errors+r.Wrong > 0 {
			failed = fmt.Sprintf("%d+%d", r.Errors, r.Wrong)
		}
		heap := "—" // no heap pass
		for _, h := range rep.Heap {
			if h.Contender == r.Contender && h.Size == r.Size {
				heap = fmtBytes(r.HeapPer100k)
			}
		}
		out = append(out, []string{
			r.Contender, fmtSize(r.Size), fmtQPS(r.QPS), fmtDur(r.P50), fmtDur(r.P99),
			fmtDur(r.CPUPerCall), heap, r.VsPlain.String(), r.VsRedis.String(), failed,
		})
	}
	return out
}

// costs is the cost per call of each contender at each size: CPU, bytes on
// the callers' and the servers' connections, and server-side memory per
// session (from the heap pass).
func (rep *Report) costs() [][]string {
	out := [][]string{{"contender", "state", "CPU/call", "caller wire/call", "server wire/call", "memory/session"}}
	for _, r := range rep.Rows() {
		mem := "—"
		for _, h := range rep.Heap {
			if h.Contender == r.Contender && h.Size == r.Size {
				mem = fmtBytes(r.HeapPer100k / 1e5)
			}
		}
		wire := func(b float64) string {
			if b == 0 {
				return "—"
			}
			return fmt.Sprintf("%.0f B", b)
		}
		out = append(out, []string{r.Contender, fmtSize(r.Size), fmtDur(r.CPUPerCall), wire(r.CallerWire), wire(r.ServerWire), mem})
	}
	return out
}

// tracked is the tracked ratios as rows: one per ratio, a column per size.
func (rep *Report) tracked() [][]string {
	head := []string{"ratio (calls/s, paired per round)"}
	for _, s := range rep.Config.Sizes {
		head = append(head, fmtSize(s))
	}
	out := [][]string{head}
	byName := map[string][]string{}
	ran := map[string]bool{} // whether both sides ran, at some size
	var order []string
	for _, t := range rep.Tracked() {
		if _, ok := byName[t.Name]; !ok {
			order = append(order, t.Name)
		}
		byName[t.Name] = append(byName[t.Name], t.Ratio.String())
		ran[t.Name] = ran[t.Name] || t.Ratio.N > 0
	}
	for _, n := range order {
		if ran[n] {
			out = append(out, append([]string{n}, byName[n]...))
		}
	}
	return out
}

func memoryTable(mem []MemoryResult) [][]string {
	out := [][]string{{"contender", "sessions", "state", "live heap before", "live heap after", "heap in use after", "growth", "per session", "failed"}}
	for _, m := range mem {
		out = append(out, []string{
			m.Contender, fmt.Sprintf("%d", m.Sessions), fmtSize(m.Size), MiB(m.HeapBefore), MiB(m.HeapAfter), MiB(m.InUseAfter),
			fmtBytes(float64(m.Growth())), fmtBytes(float64(m.Growth()) / float64(max(m.Sessions, 1))),
			fmt.Sprintf("%d", m.Errors+m.Wrong),
		})
	}
	return out
}

func writeText(w io.Writer, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func writeMarkdownTable(w io.Writer, rows [][]string) {
	for i, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
		if i == 0 {
			seps := make([]string, len(r))
			for j := range seps {
				seps[j] = "---:"
			}
			seps[0] = "---"
			fmt.Fprintf(w, "|%s|\n", strings.Join(seps, "|"))
		}
	}
}

// WriteText prints the report as plain-text tables: the comparison, the
// tracked ratios, the memory run (if any), and the skipped contenders.
func WriteText(w io.Writer, rep *Report, mem []MemoryResult) {
	writeText(w, rep.table())
	fmt.Fprintln(w)
	writeText(w, rep.tracked())
	if len(mem) > 0 {
		fmt.Fprintln(w)
		writeText(w, memoryTable(mem))
	}
	for _, s := range rep.Skipped {
		fmt.Fprintf(w, "\nskipped %s: %s", s.Contender, s.Reason)
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintln(w)
	}
}

// MarkdownMeta is what a Markdown report says besides the figures.
type MarkdownMeta struct {
	// Command is the exact command that made the report.
	Command string
	// Machine describes the machine (see Machine).
	Machine string
	// Plots are image paths relative to the Markdown file, with captions.
	Plots []Plot
}

// Plot is a written plot: its path and what it shows.
type Plot struct {
	Path, Caption string
}

// WriteMarkdown writes the report as Markdown: the command, the machine,
// the tables, the skipped contenders and the plots.
func WriteMarkdown(w io.Writer, rep *Report, mem []MemoryResult, meta MarkdownMeta) {
	c := rep.Config
	fmt.Fprintf(w, "Command:\n\n```sh\n%s\n```\n\n", meta.Command)
	fmt.Fprintf(w, "Machine: %s. Run on %s, %s.\n\n", meta.Machine, rep.Started.UTC().Format("2006-01-02 15:04 MST"), rep.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "Workload: %d concurrent callers, each running sessions of 1 to %d calls (mean %d, seed %d); every call a read-modify-write of the session's state. "+
		"%d rounds; in each round every contender runs %v at each size, in this order: %s.\n\n",
		c.Callers, 2*c.SessionCalls-1, c.SessionCalls, c.Seed, c.Rounds, c.Duration, strings.Join(rep.Ran, ", "))
	if c.HeapSessions > 0 {
		fmt.Fprintf(w, "Heap pass, after the rounds: each contender started afresh and alone at each size, %d sessions of one call; heap/100k sessions is its server-side memory growth (live heap after a full collection, plus redis-server's dataset) scaled to 100,000 sessions.\n\n", c.HeapSessions)
	}
	writeMarkdownTable(w, rep.table())
	fmt.Fprintln(w)
	writeMarkdownTable(w, rep.tracked())
	fmt.Fprintf(w, "\nCost per call: CPU/call as above; caller wire/call, the bytes read and written on the callers' connections (to the server, relay, node or nginx they call), per call; server wire/call, the same on the connections the Sessions servers accept (from callers, a relay or nginx); the traffic to Redis and NATS and between cluster nodes is in neither; memory/session, the heap pass's growth per session:\n\n")
	writeMarkdownTable(w, rep.costs())
	if len(mem) > 0 {
		fmt.Fprintf(w, "\nMemory run, before the rounds: the heap (after a full collection) of the process serving %d distinct sessions of one call each, a fresh server per contender; live heap is the live objects (runtime.MemStats.HeapAlloc), heap in use adds the free room in their spans (HeapInuse):\n\n", mem[0].Sessions)
		writeMarkdownTable(w, memoryTable(mem))
	}
	if len(rep.Skipped) > 0 {
		fmt.Fprintln(w)
		for _, s := range rep.Skipped {
			fmt.Fprintf(w, "* skipped `%s`: %s\n", s.Contender, s.Reason)
		}
	}
	for _, p := range meta.Plots {
		fmt.Fprintf(w, "\n![%s](%s)\n", p.Caption, p.Path)
	}
}
