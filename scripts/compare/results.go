package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Results is one run of every workload.
type Results struct {
	Machine  Machine          `json:"machine"`
	Date     time.Time        `json:"date"`
	Size     string           `json:"size"`
	Latency  []LatencyResult  `json:"latency"`
	Fanout   []FanoutResult   `json:"broadcast"`
	Idle     []IdleResult     `json:"idle"`
	DeadPeer []DeadPeerResult `json:"dead_peer"`
	Nats     *NatsResults     `json:"nats,omitempty"` // with -nats
}

// WriteJSON writes r to path, indented, for a reader or a later chart.
func (r *Results) WriteJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// readResults reads what WriteJSON wrote.
func readResults(path string) (*Results, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(r.Latency) == 0 {
		return nil, fmt.Errorf("%s: no latency results: not a results.json of compare", path)
	}
	return &r, nil
}

// rates are the publish rates measured, in order.
func (r *Results) rates() []float64 {
	var rates []float64
	for _, l := range r.Latency {
		if !slices.Contains(rates, l.Rate) {
			rates = append(rates, l.Rate)
		}
	}
	return rates
}

func (r *Results) latency(strategy string, rate float64) (LatencyResult, bool) {
	for _, l := range r.Latency {
		if l.Strategy == strategy && l.Rate == rate {
			return l, true
		}
	}
	return LatencyResult{}, false
}

func (r *Results) fanouts() []int {
	var ns []int
	for _, f := range r.Fanout {
		if !slices.Contains(ns, f.Subscribers) {
			ns = append(ns, f.Subscribers)
		}
	}
	return ns
}

func (r *Results) fanout(strategy string, n int) (FanoutResult, bool) {
	for _, f := range r.Fanout {
		if f.Strategy == strategy && f.Subscribers == n {
			return f, true
		}
	}
	return FanoutResult{}, false
}

// idle is strategy's idle cost from its run with the most subscribers.
func (r *Results) idle(strategy string) (IdleResult, bool) {
	var best IdleResult
	for _, i := range r.Idle {
		if i.Strategy == strategy && i.Subscribers > best.Subscribers {
			best = i
		}
	}
	return best, best.Subscribers > 0
}

func (r *Results) deadPeer(strategy string) (DeadPeerResult, bool) {
	for _, d := range r.DeadPeer {
		if d.Strategy == strategy {
			return d, true
		}
	}
	return DeadPeerResult{}, false
}

// displayName is how the tables and charts name a strategy.
func displayName(strategy string) string {
	switch strategy {
	case floor:
		return "loopback floor"
	case "grpc":
		return "grpc"
	case grpcConnEach:
		return "grpc, a connection per stream"
	}
	return strategy
}

// Markdown is the results as the tables NOTES.md and README.md show.
func (r *Results) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured by `go run ./scripts/compare` (size %s) on %s: %s.\n", r.Size, r.Date.Format("2006-01-02"), r.Machine)
	b.WriteString("Read the ratios within this run; the times move with the machine and its load.\n\n")

	rates := r.rates()
	b.WriteString("**Publish to receipt, one subscriber.** Latency from the time each update was due on a Poisson schedule (a late publish counts its delay) " +
		"to the client's printed line; the server publishes what it reads on stdin. \"After the publish\" is the strategy's own part: from the time the server published " +
		"the update (the time it carries) to the print; the rest is the way in, the same for all. The floor is the same path with nothing on it: a process " +
		"that copies each line from its stdin to a loopback TCP connection back. Short polling polls every second, long polling asks for 30 s. " +
		"\n\n")
	b.WriteString("| strategy |")
	for _, rate := range rates {
		fmt.Fprintf(&b, " %g/s p50 | p99 | max | p50 × floor | p50 after the publish |", rate)
	}
	b.WriteString("\n|---|")
	b.WriteString(strings.Repeat("---:|", 5*len(rates)))
	b.WriteString("\n")
	for _, s := range append([]string{floor}, strategies...) {
		fmt.Fprintf(&b, "| %s |", displayName(s))
		for _, rate := range rates {
			l, ok := r.latency(s, rate)
			if !ok {
				b.WriteString(" — | — | — | — | — |")
				continue
			}
			fl, _ := r.latency(floor, rate)
			fmt.Fprintf(&b, " %s | %s | %s | %s | %s |", ms(l.P50), ms(l.P99), ms(l.Max), ratio(l.P50, fl.P50), ms(l.Delivery))
		}
		b.WriteString("\n")
	}

	b.WriteString("\n**What each delivered update costs**, in the same runs once the subscriber was connected: HTTP requests (polls, webhook deliveries " +
		"and a webhook receiver's checks; a stream's one request came before), bytes through the server's sockets in both directions with headers and " +
		"framing (the floor: the bytes it writes), the server's read and write system calls (less the two of reading the update in), and the server's CPU time.\n\n| strategy |")
	for _, rate := range rates {
		fmt.Fprintf(&b, " %g/s requests | bytes | syscalls | CPU ms |", rate)
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", 4*len(rates)) + "\n")
	for _, s := range append([]string{floor}, strategies...) {
		fmt.Fprintf(&b, "| %s |", displayName(s))
		for _, rate := range rates {
			l, ok := r.latency(s, rate)
			switch {
			case !ok:
				b.WriteString(" — | — | — | — |")
			case s == floor:
				fmt.Fprintf(&b, " — | %s | %s | — |", orDash(l.Bytes, "%.0f"), orDash(l.Syscalls, "%.0f"))
			default:
				fmt.Fprintf(&b, " %.2f | %s | %s | %s |", l.Requests, orDash(l.Bytes, "%.0f"), orDash(l.Syscalls, "%.1f"), orDash(l.CPU, "%.2f"))
			}
		}
		b.WriteString("\n")
	}

	ns := r.fanouts()
	b.WriteString("\n**Broadcast.** One update to every subscriber at once: from the publish until each subscriber has it, p50 / p99 / max " +
		"(the median of the rounds' p50 and p99, the longest of all). Measured by the chapter's load generator, a process of its own; " +
		"webhooks with a receiver pool, each receiver on a port of its own. The floor: a process that writes each line of its stdin to " +
		"every one of its loopback connections in turn.\n\n| strategy |")
	for _, n := range ns {
		fmt.Fprintf(&b, " %s subscribers |", thousands(n))
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(ns)) + "\n")
	for _, s := range append([]string{floor}, fanoutStrategies...) {
		fmt.Fprintf(&b, "| %s |", displayName(s))
		for _, n := range ns {
			f, ok := r.fanout(s, n)
			switch {
			case !ok:
				b.WriteString(" — |")
			case f.Skipped != "":
				fmt.Fprintf(&b, " not run: %s |", f.Skipped)
			default:
				fmt.Fprintf(&b, " %s / %s / %s |", ms(f.P50), ms(f.P99), ms(f.Max))
			}
		}
		b.WriteString("\n")
	}

	b.WriteString("\n**What a subscriber holds on the server.** Per idle subscriber, from the broadcast run with the most subscribers (the server's " +
		"goroutines, heap in use after a collection, and stacks); and how long the server holds on to a subscriber that stops answering without closing " +
		"anything (until its goroutines are back to their count before it connected; a webhook: from a publish until the server counts the delivery failed).\n\n")
	b.WriteString("| strategy | goroutines | heap KiB | stack KiB | KiB in all | a dead peer let go after |\n|---|---:|---:|---:|---:|---:|\n")
	for _, s := range append(slices.Clone(strategies), grpcConnEach) {
		fmt.Fprintf(&b, "| %s |", displayName(s))
		if i, ok := r.idle(s); ok {
			fmt.Fprintf(&b, " %.2f | %.1f | %.1f | %.1f |", i.Goroutines, i.HeapKiB, i.StackKiB, i.HeapKiB+i.StackKiB)
		} else if s == "short" {
			b.WriteString(" nothing between polls | | | |")
		} else if s == "webhook" {
			b.WriteString(" no connection while idle | | | |")
		} else {
			b.WriteString(" — | — | — | — |")
		}
		switch d, ok := r.deadPeer(s); {
		case s == "short":
			b.WriteString(" nothing held |\n")
		case !ok:
			b.WriteString(" — |\n")
		case d.Noticed == 0:
			fmt.Fprintf(&b, " not within %s |\n", d.GaveUp)
		default:
			fmt.Fprintf(&b, " %s |\n", seconds(d.Noticed))
		}
	}

	b.WriteString("\n**Goals**, as ratios within this run:\n\n")
	for _, g := range r.Goals() {
		fmt.Fprintf(&b, "- %s\n", g)
	}
	return b.String()
}

// Goals checks the run against the goals the comparison is reported
// against, one line each.
func (r *Results) Goals() []string {
	var goals []string
	rates := r.rates()
	if len(rates) > 0 {
		rate := rates[0]
		fl, _ := r.latency(floor, rate)
		var parts []string
		met := true
		for _, s := range pushStrategies {
			if l, ok := r.latency(s, rate); ok {
				x := float64(l.P50) / float64(max(fl.P50, 1))
				met = met && x <= 1.5
				parts = append(parts, fmt.Sprintf("%s %.2f×", s, x))
			}
		}
		goals = append(goals, fmt.Sprintf("Every push strategy's p50 at %g/s within 1.5× of the loopback floor's: %s (%s).", rate, verdict(met), strings.Join(parts, ", ")))
		sse, _ := r.latency("sse", rate)
		parts, met = nil, true
		for _, s := range []string{"ws", "grpc"} {
			if l, ok := r.latency(s, rate); ok {
				x := float64(l.P50) / float64(max(sse.P50, 1))
				met = met && x <= 1.2
				parts = append(parts, fmt.Sprintf("%s %.2f×", s, x))
			}
		}
		goals = append(goals, fmt.Sprintf("WebSocket's and gRPC's p50 at %g/s within 1.2× of SSE's: %s (%s).", rate, verdict(met), strings.Join(parts, ", ")))
	}
	if ns := r.fanouts(); len(ns) > 0 {
		n := slices.Max(ns)
		var best time.Duration
		for _, s := range pushStrategies {
			if f, ok := r.fanout(s, n); ok && f.Skipped == "" && (best == 0 || f.P99 < best) {
				best = f.P99
			}
		}
		var parts []string
		met := true
		for _, s := range pushStrategies {
			f, ok := r.fanout(s, n)
			switch {
			case !ok:
			case f.Skipped != "":
				parts = append(parts, s+" not run")
			default:
				x := float64(f.P99) / float64(max(best, 1))
				met = met && x <= 2
				parts = append(parts, fmt.Sprintf("%s %.2f×", s, x))
			}
		}
		goals = append(goals, fmt.Sprintf("Broadcast to %s: every push strategy's p99 within 2× of the best one's: %s (%s).", thousands(n), verdict(met), strings.Join(parts, ", ")))
	}
	var parts []string
	met := true
	for _, s := range []string{"sse", "ws"} {
		if i, ok := r.idle(s); ok {
			kib := i.HeapKiB + i.StackKiB
			met = met && kib <= 12
			parts = append(parts, fmt.Sprintf("%s %.1f KiB", s, kib))
		}
	}
	if len(parts) > 0 {
		line := fmt.Sprintf("Memory per idle subscriber, SSE and WebSocket at most 12 KiB: %s (%s)", verdict(met), strings.Join(parts, ", "))
		if i, ok := r.idle("grpc"); ok {
			line += fmt.Sprintf("; gRPC %.1f KiB per stream on a shared connection", i.HeapKiB+i.StackKiB)
		}
		if i, ok := r.idle(grpcConnEach); ok {
			line += fmt.Sprintf(", %.1f KiB with a connection per stream", i.HeapKiB+i.StackKiB)
		}
		goals = append(goals, line+".")
	}
	return goals
}

func verdict(met bool) string {
	if met {
		return "**met**"
	}
	return "**missed**"
}

// ms formats d in milliseconds with about three significant digits.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", float64(a)/float64(b))
}

func orDash(v float64, format string) string {
	if v < 0 {
		return "—"
	}
	return fmt.Sprintf(format, v)
}

// thousands writes n with commas: 10,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// markers are the two lines that a table is written between.
type markers struct{ begin, end string }

var (
	compareMarkers = markers{"<!-- compare:begin -->", "<!-- compare:end -->"}
	natsMarkers    = markers{"<!-- compare-nats:begin -->", "<!-- compare-nats:end -->"}
)

// replaceBetweenMarkers replaces what file holds between its markers m
// with text.
func replaceBetweenMarkers(file string, m markers, text string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	updated, err := betweenMarkers(data, m, text)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return os.WriteFile(file, updated, 0o644)
}

// hasMarkers reports whether file holds the begin line of m.
func hasMarkers(file string, m markers) (bool, error) {
	data, err := os.ReadFile(file)
	return bytes.Contains(data, []byte(m.begin)), err
}

func betweenMarkers(data []byte, m markers, text string) ([]byte, error) {
	before, rest, ok := bytes.Cut(data, []byte(m.begin))
	if !ok {
		return nil, errors.New("no " + m.begin + " line")
	}
	_, after, ok := bytes.Cut(rest, []byte(m.end))
	if !ok {
		return nil, errors.New("no " + m.end + " after " + m.begin)
	}
	if bytes.Contains(after, []byte(m.begin)) {
		return nil, errors.New("more than one " + m.begin)
	}
	var out bytes.Buffer
	out.Write(before)
	out.WriteString(m.begin + "\n")
	out.WriteString(strings.TrimRight(text, "\n") + "\n")
	out.WriteString(m.end)
	out.Write(after)
	return out.Bytes(), nil
}
