package bench

import (
	"fmt"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// WritePlots draws the report's plots as PNG files in dir and returns them
// (paths relative to dir): throughput, CPU per call, bytes per call on the
// callers' connections and memory per session (with a heap pass) against
// state size, and the latency distribution at each size.
func WritePlots(dir string, rep *Report) ([]Plot, error) {
	rows := rep.Rows()
	var plots []Plot

	for _, sp := range []struct {
		file, caption, title, y string
		f                       func(Row) float64
	}{
		{"throughput.png", "Throughput against state size", "Throughput against state size (median over rounds)", "calls/s",
			func(r Row) float64 { return r.QPS }},
		{"cpu.png", "CPU per call against state size", "CPU per call against state size (median over rounds)", "CPU per call (µs)",
			func(r Row) float64 { return float64(r.CPUPerCall.Nanoseconds()) / 1e3 }},
		{"wire.png", "Bytes per call on the callers' connections against state size", "Bytes on the callers' connections per call", "bytes per call",
			func(r Row) float64 { return r.CallerWire }},
		{"memory.png", "Server-side memory per session against state size", "Server-side memory per session (heap pass)", "bytes per session",
			func(r Row) float64 { return r.HeapPer100k / 1e5 }},
	} {
		if sp.file == "memory.png" && len(rep.Heap) == 0 {
			continue
		}
		p := plot.New()
		p.Title.Text = sp.title
		p.X.Label.Text = "state per session (bytes)"
		p.Y.Label.Text = sp.y
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = sizeTicks(rep.Config.Sizes)
		p.X.Min, p.X.Max = float64(slices.Min(rep.Config.Sizes))/1.5, float64(slices.Max(rep.Config.Sizes))*1.5
		p.Y.Min = 0
		p.Legend.Top = true
		var lines []any
		for _, name := range rep.Ran {
			var xys plotter.XYs
			for _, r := range rows {
				if r.Contender == name && r.Calls > 0 {
					xys = append(xys, plotter.XY{X: float64(r.Size), Y: max(0, sp.f(r))})
				}
			}
			lines = append(lines, name, xys)
		}
		if err := plotutil.AddLinePoints(p, lines...); err != nil {
			return nil, err
		}
		if err := p.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, sp.file)); err != nil {
			return nil, err
		}
		plots = append(plots, Plot{sp.file, sp.caption})
	}

	for _, size := range rep.Config.Sizes {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("Latency distribution, %s of state per session", fmtSize(size))
		p.X.Label.Text = "latency (µs, log scale)"
		p.Y.Label.Text = "fraction of calls at or below"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Y.Min, p.Y.Max = 0, 1
		p.Legend.Left, p.Legend.Top = true, true
		var lines []any
		for _, r := range rows {
			if r.Size != size || r.Latency.Count() == 0 {
				continue
			}
			lat, frac := r.Latency.CDF()
			xys := make(plotter.XYs, len(lat))
			for i := range lat {
				xys[i] = plotter.XY{X: float64(lat[i].Nanoseconds()) / 1e3, Y: frac[i]}
			}
			lines = append(lines, r.Contender, xys)
		}
		if err := plotutil.AddLines(p, lines...); err != nil {
			return nil, err
		}
		name := fmt.Sprintf("latency-%d.png", size)
		if err := p.Save(8*vg.Inch, 5*vg.Inch, filepath.Join(dir, name)); err != nil {
			return nil, err
		}
		plots = append(plots, Plot{name, fmt.Sprintf("Latency distribution at %s", fmtSize(size))})
	}
	return plots, nil
}

// sizeTicks marks the state sizes measured on a log axis.
type sizeTicks []int

func (s sizeTicks) Ticks(min, max float64) []plot.Tick {
	var out []plot.Tick
	for _, v := range s {
		if float64(v) >= min && float64(v) <= max {
			out = append(out, plot.Tick{Value: float64(v), Label: strconv.Itoa(v)})
		}
	}
	return out
}
