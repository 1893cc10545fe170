package main

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Charts draws the results as SVG files in dir and returns their paths.
func (r *Results) Charts(dir string) ([]string, error) {
	charts := []struct {
		file string
		draw func() (*plot.Plot, error)
	}{
		{"latency.svg", r.latencyChart},
		{"bytes.svg", r.bytesChart},
		{"broadcast.svg", r.broadcastChart},
		{"memory.svg", r.memoryChart},
	}
	var files []string
	for _, c := range charts {
		p, err := c.draw()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.file, err)
		}
		path := filepath.Join(dir, c.file)
		if err := saveSVG(p, path); err != nil {
			return nil, err
		}
		files = append(files, path)
	}
	return files, nil
}

// saveSVG writes p as an SVG that names its fonts instead of embedding
// them: a tenth of the size, and every browser has a sans-serif.
func saveSVG(p *plot.Plot, path string) error {
	c := vgsvg.NewWith(vgsvg.UseWH(18*vg.Centimeter, 10*vg.Centimeter), vgsvg.EmbedFonts(false))
	p.Draw(draw.New(c))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := c.WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newPlot(title, ylabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

// logY puts p's Y axis on a log scale, which a chart of times from a tenth
// of a millisecond (a stream) to a second (a poll) needs.
func logY(p *plot.Plot) {
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
}

// positive keeps a log axis away from zero, where it has no place.
func positive(v float64) float64 { return math.Max(v, 1e-3) }

// latencyChart is each strategy's p50 and p99 at each rate, a point each,
// on a log scale.
func (r *Results) latencyChart() (*plot.Plot, error) {
	p := newPlot("Publish to receipt, one subscriber", "milliseconds (log scale)")
	logY(p)
	names := nominalStrategies(p)
	p.Legend.Left = false // the top left is short polling's
	rates := r.rates()
	series := 0
	for ri, rate := range rates {
		for pi, which := range []string{"p50", "p99"} {
			var pts plotter.XYs
			for i, s := range names {
				l, ok := r.latency(s, rate)
				if !ok {
					continue
				}
				v := l.P50
				if which == "p99" {
					v = l.P99
				}
				// Side by side around the strategy's place, not on top of each other.
				x := float64(i) + (float64(ri*2+pi)-float64(len(rates)*2-1)/2)*0.12
				pts = append(pts, plotter.XY{X: x, Y: positive(float64(v) / 1e6)})
			}
			sc, err := plotter.NewScatter(pts)
			if err != nil {
				return nil, err
			}
			sc.GlyphStyle.Color = darkColor(ri)
			sc.GlyphStyle.Shape = plotutil.Shape(pi)
			sc.GlyphStyle.Radius = vg.Points(3)
			p.Add(sc)
			p.Legend.Add(fmt.Sprintf("%s at %g/s", which, rate), sc)
			series++
		}
	}
	if series == 0 {
		return nil, fmt.Errorf("no latency results")
	}
	return p, nil
}

// bytesChart is the bytes per delivered update, a bar per strategy for each
// rate.
func (r *Results) bytesChart() (*plot.Plot, error) {
	p := newPlot("Bytes per delivered update, both directions", "bytes")
	names := nominalStrategies(p)
	rates := r.rates()
	width := vg.Points(14)
	for ri, rate := range rates {
		values := make(plotter.Values, len(names))
		for i, s := range names {
			if l, ok := r.latency(s, rate); ok && l.Bytes > 0 {
				values[i] = l.Bytes
			}
		}
		bars, err := plotter.NewBarChart(values, width)
		if err != nil {
			return nil, err
		}
		bars.Color = darkColor(ri)
		bars.LineStyle.Width = 0
		bars.Offset = (vg.Length(ri) - vg.Length(len(rates)-1)/2) * width
		p.Add(bars)
		p.Legend.Add(fmt.Sprintf("at %g/s", rate), bars)
	}
	p.Legend.Left = false
	headroom(p)
	return p, nil
}

// broadcastChart is each push strategy's broadcast p99 against the number
// of subscribers, both on log scales.
func (r *Results) broadcastChart() (*plot.Plot, error) {
	p := newPlot("Broadcast: p99 until each subscriber has it", "milliseconds (log scale)")
	logY(p)
	p.X.Label.Text = "subscribers (log scale)"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top, p.Legend.Left = false, false // the lines rise from the bottom left to the top right
	for i, s := range append([]string{floor}, fanoutStrategies...) {
		var pts plotter.XYs
		for _, n := range r.fanouts() {
			if f, ok := r.fanout(s, n); ok && f.Skipped == "" {
				pts = append(pts, plotter.XY{X: float64(n), Y: positive(float64(f.P99) / 1e6)})
			}
		}
		if len(pts) == 0 {
			continue
		}
		line, points, err := plotter.NewLinePoints(pts)
		if err != nil {
			return nil, err
		}
		line.Color = darkColor(i)
		points.Color = darkColor(i)
		points.Shape = plotutil.Shape(i)
		p.Add(line, points)
		p.Legend.Add(displayName(s), line, points)
	}
	if r.fanouts() != nil && slices.Min(r.fanouts()) == slices.Max(r.fanouts()) {
		// One fan-out: widen the axis around it, a log axis needs a range.
		n := float64(r.fanouts()[0])
		p.X.Min, p.X.Max = n/2, n*2
	}
	return p, nil
}

// memoryChart is what an idle subscriber holds on the server: heap and
// stack, stacked.
func (r *Results) memoryChart() (*plot.Plot, error) {
	p := newPlot("Server memory per idle subscriber", "KiB")
	var names []string
	var heap, stack plotter.Values
	for _, s := range append(slices.Clone(strategies), grpcConnEach) {
		if i, ok := r.idle(s); ok {
			names = append(names, shortName(s))
			heap, stack = append(heap, i.HeapKiB), append(stack, i.StackKiB)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no idle results")
	}
	p.NominalX(names...)
	padNominal(p, len(names))
	width := vg.Points(24)
	stackBars, err := plotter.NewBarChart(stack, width)
	if err != nil {
		return nil, err
	}
	stackBars.Color = color.RGBA{R: 0x4c, G: 0x72, B: 0xb0, A: 0xff}
	stackBars.LineStyle.Width = 0
	heapBars, err := plotter.NewBarChart(heap, width)
	if err != nil {
		return nil, err
	}
	heapBars.Color = color.RGBA{R: 0xdd, G: 0x84, B: 0x52, A: 0xff}
	heapBars.LineStyle.Width = 0
	heapBars.StackOn(stackBars)
	p.Add(stackBars, heapBars)
	p.Legend.Add("stack", stackBars)
	p.Legend.Add("heap", heapBars)
	// The goal for SSE and WebSockets, as a dashed line across.
	goal, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: 12}, {X: float64(len(names)) - 0.5, Y: 12}})
	if err != nil {
		return nil, err
	}
	goal.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(goal)
	p.Legend.Add("goal for sse and ws: 12 KiB", goal)
	headroom(p)
	return p, nil
}

// shortName is a strategy's name where a chart's axis has little room.
func shortName(strategy string) string {
	if strategy == grpcConnEach {
		return "grpc, conn each"
	}
	return displayName(strategy)
}

// nominalStrategies makes p's X axis the floor and the six strategies, and
// returns them in that order.
func nominalStrategies(p *plot.Plot) []string {
	names := append([]string{floor}, strategies...)
	var labels []string
	for _, s := range names {
		labels = append(labels, displayName(s))
	}
	p.NominalX(labels...)
	padNominal(p, len(labels))
	return names
}

// padNominal leaves half a category of room at both ends of a nominal X
// axis, so that bars beside a category's place are not cut off.
func padNominal(p *plot.Plot, n int) {
	p.X.Min, p.X.Max = -0.6, float64(n)-0.4
}

// headroom raises a linear Y axis by a fifth, so that the legend does not
// sit on the tallest bar.
func headroom(p *plot.Plot) {
	p.Y.Min = 0
	p.Y.Max *= 1.2
}

// darkColor is the i-th of plotutil's dark colours, which stay readable as
// thin lines and small points.
func darkColor(i int) color.Color { return plotutil.DarkColors[i%len(plotutil.DarkColors)] }
