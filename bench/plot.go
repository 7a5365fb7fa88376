package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// A small line-plot writer for BENCHMARKS.md: two panels, log-scaled N on
// the x axis. Written here rather than pulling a plotting library for two
// charts.

type series struct {
	name string
	col  color.RGBA
	xs   []float64
	ys   []float64
}

type panel struct {
	title, ylabel string
	logY          bool
	series        []series
}

var (
	colSets     = color.RGBA{0x1f, 0x77, 0xb4, 0xff}
	colRules    = color.RGBA{0xd6, 0x27, 0x28, 0xff}
	colBase     = color.RGBA{0x55, 0x55, 0x55, 0xff}
	colNFTSets  = color.RGBA{0x2c, 0xa0, 0x2c, 0xff}
	colNFTRules = color.RGBA{0xff, 0x7f, 0x0e, 0xff}
	colPeer     = color.RGBA{0x94, 0x67, 0xbd, 0xff}
	colGrid     = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	colBlack    = color.RGBA{0, 0, 0, 0xff}
	panelW      = 520
	panelH      = 400
	marginL     = 80
	marginB     = 50
	marginTop   = 56
)

func writePlot(path string, panels []panel) error {
	img := image.NewRGBA(image.Rect(0, 0, panelW*len(panels), panelH))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	for i, p := range panels {
		drawPanel(img, image.Pt(i*panelW, 0), p)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing plot: %w", err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		return fmt.Errorf("encoding plot: %w", err)
	}
	return f.Close()
}

func drawPanel(img *image.RGBA, at image.Point, p panel) {
	x0, y0 := at.X+marginL, at.Y+panelH-marginB // origin
	w, h := panelW-marginL-30, panelH-marginB-marginTop
	minX, maxX := math.Inf(1), math.Inf(-1)
	minY, maxY := math.Inf(1), math.Inf(-1)
	for _, s := range p.series {
		for i := range s.xs {
			minX, maxX = math.Min(minX, s.xs[i]), math.Max(maxX, s.xs[i])
			minY, maxY = math.Min(minY, s.ys[i]), math.Max(maxY, s.ys[i])
		}
	}
	if math.IsInf(minX, 0) {
		return
	}
	lx0, lx1 := math.Floor(math.Log10(minX)), math.Ceil(math.Log10(maxX))
	var ly0, ly1 float64
	if p.logY {
		ly0, ly1 = math.Floor(math.Log10(minY)), math.Ceil(math.Log10(maxY))
	} else {
		ly0, ly1 = 0, niceCeil(maxY*1.1)
	}
	px := func(x float64) int { return x0 + int(float64(w)*(math.Log10(x)-lx0)/(lx1-lx0)) }
	py := func(y float64) int {
		v := y
		if p.logY {
			v = math.Log10(y)
		}
		return y0 - int(float64(h)*(v-ly0)/(ly1-ly0))
	}
	// Grid and ticks.
	for e := lx0; e <= lx1; e++ {
		x := px(math.Pow(10, e))
		line(img, x, y0, x, y0-h, colGrid)
		label(img, x-12, y0+16, fmt.Sprintf("%g", math.Pow(10, e)), colBlack)
	}
	if p.logY {
		for e := ly0; e <= ly1; e++ {
			y := py(math.Pow(10, e))
			line(img, x0, y, x0+w, y, colGrid)
			label(img, at.X+8, y+4, shortNum(math.Pow(10, e)), colBlack)
		}
	} else {
		for i := 0; i <= 5; i++ {
			v := ly0 + (ly1-ly0)*float64(i)/5
			y := py(v)
			line(img, x0, y, x0+w, y, colGrid)
			label(img, at.X+8, y+4, shortNum(v), colBlack)
		}
	}
	line(img, x0, y0, x0+w, y0, colBlack)
	line(img, x0, y0, x0, y0-h, colBlack)
	label(img, at.X+marginL, at.Y+16, p.title, colBlack)
	label(img, x0+w/2-60, y0+36, "N (log scale)", colBlack)
	label(img, at.X+8, at.Y+38, p.ylabel, colBlack)
	for i, s := range p.series {
		for j := range s.xs {
			x, y := px(s.xs[j]), py(s.ys[j])
			fill(img, x-3, y-3, x+3, y+3, s.col)
			if j > 0 {
				thick(img, px(s.xs[j-1]), py(s.ys[j-1]), x, y, s.col)
			}
		}
		ly := at.Y + marginTop + 14 + 16*i
		fill(img, x0+w-170, ly-6, x0+w-158, ly, s.col)
		label(img, x0+w-152, ly, s.name, colBlack)
	}
}

func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func shortNum(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

func label(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func fill(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	draw.Draw(img, image.Rect(x0, y0, x1, y1), image.NewUniform(c), image.Point{}, draw.Src)
}

func thick(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	line(img, x0, y0, x1, y1, c)
	line(img, x0, y0+1, x1, y1+1, c)
}

// line draws with Bresenham's algorithm.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := sign(x1-x0), sign(y1-y0)
	e := dx + dy
	for {
		img.SetRGBA(x0, y0, c)
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

func sign(v int) int {
	switch {
	case v < 0:
		return -1
	case v > 0:
		return 1
	}
	return 0
}
