package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress tells the person waiting what the run is doing: a bar redrawn in
// place on a terminal, plain lines anywhere else (a CI log, a file), where
// carriage returns would pile up.
type progress struct {
	mu       sync.Mutex
	w        io.Writer
	bar      bool
	total    int
	finished int
	current  string
	started  time.Time
}

func newProgress(w io.Writer, mode string) (*progress, error) {
	p := &progress{w: w, started: time.Now()}
	switch mode {
	case "bar":
		p.bar = true
	case "lines":
	case "auto":
		p.bar = isTerminal(w)
	default:
		return nil, fmt.Errorf("-progress %q: choose bar, lines or auto", mode)
	}
	return p, nil
}

// isTerminal reports whether w is a character device, as a terminal is.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}

func (p *progress) start(total int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.total = total
}

// phase says what the run starts now.
func (p *progress) phase(what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current = what
	if p.bar {
		p.draw()
		return
	}
	fmt.Fprintf(p.w, "compare: [%d/%d %s] %s\n", p.finished, p.total, p.elapsed(), what)
}

// done counts one measurement finished.
func (p *progress) done(what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.finished++
	if p.bar {
		p.draw()
		return
	}
	fmt.Fprintf(p.w, "compare: [%d/%d %s] done: %s\n", p.finished, p.total, p.elapsed(), what)
}

func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar {
		p.current = "finished"
		p.draw()
		fmt.Fprintln(p.w)
	}
}

func (p *progress) elapsed() string { return time.Since(p.started).Round(time.Second).String() }

// draw redraws the bar on its line: the line is cleared first, so a shorter
// text leaves nothing of a longer one behind.
func (p *progress) draw() {
	const width = 30
	filled := 0
	if p.total > 0 {
		filled = width * p.finished / p.total
	}
	fmt.Fprintf(p.w, "\r\x1b[K[%s%s] %d/%d %s  %s", strings.Repeat("=", filled), strings.Repeat(" ", width-filled), p.finished, p.total, p.elapsed(), p.current)
}
