package main

import (
	"bytes"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// Both plot kinds write a PNG that decodes, at the size asked for, with
// more in it than an empty frame (a few kB).
func TestPlotsArePNGs(t *testing.T) {
	dir := t.TempDir()
	secs := func(f func(i int) float64) series {
		s := series{}
		for i := 0; i < 30; i++ {
			s.xs, s.ys = append(s.xs, float64(i)), append(s.ys, f(i))
		}
		return s
	}
	perSec := []series{secs(func(int) float64 { return 100 }), secs(func(i int) float64 { return 60 + float64(i) })}
	perSec[0].name, perSec[1].name = "spartan", "coredns"
	perSec[1].ys[3] = math.NaN() // a second without data is left out
	ccdfs := []series{
		{name: "direct", xs: []float64{0.05, 0.1, 0.2, 1.2}, ys: []float64{1, 0.1, 0.01, 0.001}},
		{name: "lossy", xs: []float64{0.1, 0.3, 2000, math.Inf(1)}, ys: []float64{1, 0.1, 0.01, 0.001}},
	}
	cases := []struct {
		name string
		draw func(path string) error
	}{
		{"per-second", func(p string) error { return plotPerSecond(p, "Scenario 3", "within 100 ms (%)", perSec) }},
		{"ccdf", func(p string) error { return plotCCDF(p, "Scenario 2", ccdfs) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, c.name+".png")
			if err := c.draw(path); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			img, err := png.Decode(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("not a PNG: %v", err)
			}
			if w, h := img.Bounds().Dx(), img.Bounds().Dy(); w < 600 || h < 300 {
				t.Errorf("image %dx%d, want at least 600x300", w, h)
			}
			if len(b) < 10_000 {
				t.Errorf("PNG of %d bytes: too small to hold axes, lines and a legend", len(b))
			}
		})
	}
}
