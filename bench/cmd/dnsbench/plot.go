package main

import (
	"fmt"
	"math"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// series is one row's line in a plot.
type series struct {
	name   string
	xs, ys []float64
}

// plotPerSecond draws one line per row of a per-second percentage (answered
// within 100 ms, answered) over the seconds of a run. The y axis ends at
// 100 and starts a little below the lowest value, so that 99 % and 100 %
// are told apart when every row is close to 100 and a collapse to 0 is
// still on the page.
func plotPerSecond(path, title, yLabel string, ss []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "second of the run"
	p.Y.Label.Text = yLabel
	lo := 100.0
	for _, s := range ss {
		for _, y := range s.ys {
			if !math.IsNaN(y) {
				lo = min(lo, y)
			}
		}
	}
	p.Y.Min, p.Y.Max = math.Max(0, math.Floor(lo/10)*10-5), 101
	if err := addLines(p, ss, func(x, y float64) bool { return !math.IsNaN(y) }); err != nil {
		return err
	}
	// Lines run along the top (fine) and, for a row that gives up, along
	// the bottom: the legend goes in between.
	p.Legend.YOffs = plotHeight / 4
	return save(p, path)
}

// plotCCDF draws latency CCDFs on log-log axes: x a latency, y the fraction
// of queries that took at least that long. Points that a log axis cannot
// show (lost queries, +Inf; a zero) are left out.
func plotCCDF(path, title string, ss []series) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "latency (ms)"
	p.Y.Label.Text = "fraction of queries at least that slow"
	p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
	p.X.Tick.Marker, p.Y.Tick.Marker = plot.LogTicks{Prec: -1}, plot.LogTicks{Prec: -1}
	shown := func(x, y float64) bool { return x > 0 && y > 0 && !math.IsInf(x, 0) && !math.IsNaN(x) }
	if err := addLines(p, ss, shown); err != nil {
		return err
	}
	// Every CCDF starts at 1 (the fastest query); left to itself the
	// log axis would pad the top by most of a decade.
	p.Y.Max = 1
	return save(p, path)
}

func addLines(p *plot.Plot, ss []series, keep func(x, y float64) bool) error {
	p.Add(plotter.NewGrid())
	p.Legend.Top = false
	p.Legend.Left = true
	for i, s := range ss {
		var pts plotter.XYs
		for j := range s.xs {
			if keep(s.xs[j], s.ys[j]) {
				pts = append(pts, plotter.XY{X: s.xs[j], Y: s.ys[j]})
			}
		}
		if len(pts) == 0 {
			continue
		}
		l, err := plotter.NewLine(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", s.name, err)
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i)
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(s.name, l)
	}
	return nil
}

const plotHeight = 4.5 * vg.Inch

func save(p *plot.Plot, path string) error {
	if err := p.Save(9*vg.Inch, plotHeight, path); err != nil {
		return fmt.Errorf("write plot %s: %w", path, err)
	}
	return nil
}
