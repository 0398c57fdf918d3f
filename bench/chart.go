package bench

import (
	"fmt"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// rateWindow is the window of the events/s curves: the 250 ms samples step by whole
// batches, so each point is the rate over the last second.
const rateWindow = 1.0

// writeCharts draws drain.svg, pipeline.svg and reads.svg into dir: those of the phases
// run (see Report.charts).
func writeCharts(rep *Report, dir string) error {
	if rep.ran(PhaseDrain) {
		if err := rateChart(filepath.Join(dir, "drain.svg"), "Drain: prefilled queue → committed", []series{
			{"service (warehouse consume)", rep.Drain.Service.Samples, false, 0},
			{"ceiling (bare consumer)", rep.Drain.Ceiling.Samples, false, 1},
		}); err != nil {
			return err
		}
	}
	if rep.ran(PhasePipeline) {
		batch := fmt.Sprintf("%d events per message", rep.PipelineBatch.PerMessage)
		if err := rateChart(filepath.Join(dir, "pipeline.svg"), "Pipeline: published by a process → committed", []series{
			{"service: committed", rep.Pipeline.Service.Samples, false, 0},
			{"ceiling: committed", rep.Pipeline.Ceiling.Samples, false, 1},
			{batch + ": committed", rep.PipelineBatch.Service.Samples, false, 2},
			{"service: published (queued or committed)", rep.Pipeline.Service.Samples, true, 0},
			{"ceiling: published (queued or committed)", rep.Pipeline.Ceiling.Samples, true, 1},
			{batch + ": published (queued or committed)", rep.PipelineBatch.Service.Samples, true, 2},
		}); err != nil {
			return err
		}
	}
	if rep.ran(PhaseReads) {
		return latencyChart(filepath.Join(dir, "reads.svg"), rep.Reads)
	}
	return nil
}

type series struct {
	name      string
	samples   []Sample
	published bool // plot the published count instead of the committed one
	color     int  // of plotutil's palette: a run's committed and published curves share one
}

// rates turns cumulative samples into events/s over the last rateWindow seconds.
func rates(s []Sample, published bool) plotter.XYs {
	count := func(i int) float64 {
		if published {
			return float64(s[i].Published)
		}
		return float64(s[i].Committed)
	}
	var xys plotter.XYs
	j := 0
	for i := 1; i < len(s); i++ {
		for j < i-1 && s[i].T-s[j+1].T >= rateWindow {
			j++
		}
		dt := s[i].T - s[j].T
		if dt <= 0 {
			continue
		}
		xys = append(xys, plotter.XY{X: s[i].T, Y: (count(i) - count(j)) / dt})
	}
	return xys
}

func rateChart(file, title string, ss []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "seconds"
	p.Y.Label.Text = "events/s (over the last second)"
	p.X.Min, p.Y.Min = 0, 0
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	top := 0.0
	for _, s := range ss {
		xys := rates(s.samples, s.published)
		if len(xys) == 0 {
			continue
		}
		for _, xy := range xys {
			top = max(top, xy.Y)
		}
		l, err := plotter.NewLine(xys)
		if err != nil {
			return err
		}
		l.Color = plotutil.Color(s.color)
		l.Width = vg.Points(1.5)
		if s.published {
			l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
			l.Width = vg.Points(1)
		}
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	p.Y.Max = 1.35 * top // room for the legend above the curves
	return p.Save(8*vg.Inch, 4*vg.Inch, file)
}

// latencyChart draws p50, p90 and p99 of every read case, the service next to its ceiling.
func latencyChart(file string, rr ReadsResult) error {
	p := plot.New()
	p.Title.Text = "Reads: latency percentiles at the same concurrency"
	p.Y.Label.Text = "ms"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	var names []string
	pct := []struct {
		name string
		get  func(ReadResult) float64
	}{
		{"p50", func(r ReadResult) float64 { return r.P50Ms }},
		{"p90", func(r ReadResult) float64 { return r.P90Ms }},
		{"p99", func(r ReadResult) float64 { return r.P99Ms }},
	}
	values := make([]plotter.Values, len(pct))
	top := 0.0
	for _, c := range rr.Cases {
		names = append(names, c.Route+" "+c.Cache+"\nservice", c.Route+" "+c.Cache+"\nceiling")
		for i, q := range pct {
			values[i] = append(values[i], q.get(c.Service), q.get(c.Ceiling))
			top = max(top, q.get(c.Service), q.get(c.Ceiling))
		}
	}
	p.Y.Max = 1.2 * max(top, targetCachedP99Ms)
	if len(names) == 0 {
		return p.Save(8*vg.Inch, 4*vg.Inch, file)
	}
	w := vg.Points(9)
	for i, q := range pct {
		bars, err := plotter.NewBarChart(values[i], w)
		if err != nil {
			return err
		}
		bars.Color = plotutil.Color(i)
		bars.LineStyle.Width = 0
		bars.Offset = vg.Length(i-1) * w
		p.Add(bars)
		p.Legend.Add(q.name, bars)
	}
	// the target of cached reads' p99, across the cached cases
	if target, err := plotter.NewLine(plotter.XYs{{X: -0.5, Y: targetCachedP99Ms}, {X: float64(len(names)) - 0.5, Y: targetCachedP99Ms}}); err == nil {
		target.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		target.Color = plotutil.Color(3)
		p.Add(target)
		p.Legend.Add("p99 target of cached reads", target)
	}
	p.NominalX(names...)
	p.X.Tick.Label.Font.Size = vg.Points(7)
	p.Legend.Left = true
	return p.Save(10*vg.Inch, 4.5*vg.Inch, file)
}
