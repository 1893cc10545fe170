package client

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"realtime/06-grpc/feed"
)

// Update is one update as every transport carries it.
type Update struct {
	ID   uint64    `json:"id"`
	Data string    `json:"data"`
	Time time.Time `json:"time"`
}

// Session is one client's position and output. Strategies report to it; it
// prints each update once, in order, and says so whenever updates are lost.
// A Session belongs to one goroutine at a time.
type Session struct {
	strategy string
	after    uint64 // id of the last update printed
	epoch    string // the server run that id belongs to; "" until known
	answered bool   // the server answered since the last takeAnswered
	out      printer
	stderr   io.Writer
	now      func() time.Time
}

// SessionOptions configures a Session.
type SessionOptions struct {
	Strategy string // named in -json lines and messages
	After    uint64 // start after this id
	Epoch    string // the server run After belongs to; "" skips the restart check
	JSON     bool   // print JSON lines instead of "<id> <data>"
	Tagged   bool   // sessions side by side (RunAll): plain lines start with the strategy and the latency, messages with the strategy
	Stdout   io.Writer
	Stderr   io.Writer
	Now      func() time.Time // nil means time.Now; latency is measured with it
}

// NewSession returns a session that starts after opts.After.
func NewSession(opts SessionOptions) *Session {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	stderr := opts.Stderr
	if opts.Tagged {
		stderr = prefixWriter{prefix: opts.Strategy + ": ", w: stderr}
	}
	return &Session{
		strategy: opts.Strategy,
		after:    opts.After,
		epoch:    opts.Epoch,
		out:      printer{w: opts.Stdout, json: opts.JSON, tagged: opts.Tagged},
		stderr:   stderr,
		now:      now,
	}
}

// Cursor returns the id of the last update handled and its epoch ("" when
// not yet known).
func (s *Session) Cursor() (after uint64, epoch string) { return s.after, s.epoch }

// Answered records that the server answered, and which run it is. Run resets
// its backoff after a strategy that got answers.
func (s *Session) Answered(epoch string) {
	s.answered = true
	s.epoch = epoch
}

func (s *Session) takeAnswered() bool {
	answered := s.answered
	s.answered = false
	return answered
}

// Deliver prints u unless it was printed before. An update that skips ids is
// printed too, after a gap warning: the server should never do that, and if it
// does, the user is told.
func (s *Session) Deliver(u Update) error {
	if u.ID <= s.after {
		return nil // a duplicate, after a retry or replay
	}
	if s.after > 0 && u.ID > s.after+1 {
		fmt.Fprintf(s.stderr, "gap: updates %d to %d were never received\n", s.after+1, u.ID-1)
	}
	s.after = u.ID
	return s.out.print(u, s.strategy, s.epoch, s.now())
}

// Gap records that the server cannot resume after the cursor, and continues
// from last, the server's newest id. Call Answered first with the server's
// epoch.
func (s *Session) Gap(last uint64) {
	fmt.Fprintf(s.stderr, "gap: server cannot resume after update %d; updates may be missing; continuing from %d\n", s.after, last)
	s.after = last
}

// published reports that a publish through the socket became update id. It
// goes to stderr, with every other message: stdout is one line per update.
func (s *Session) published(id uint64) { fmt.Fprintf(s.stderr, "published %d\n", id) }

// notPublished reports that the server refused a publish, and why.
func (s *Session) notPublished(reason string) {
	fmt.Fprintf(s.stderr, "not published: %s\n", terminalSafe(reason))
}

// publishLost reports a publish whose outcome never came.
func (s *Session) publishLost(text string) {
	fmt.Fprintf(s.stderr, "unknown outcome: the connection dropped before the server answered %s; not sent again, which could publish it twice\n", feed.Quote(text))
}

// prefixWriter writes prefix before each Write to w. Every message of a
// session is one line in one Write, so each line gets it once.
type prefixWriter struct {
	prefix string
	w      io.Writer
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := io.WriteString(p.w, p.prefix+string(b)); err != nil {
		return 0, err
	}
	return len(b), nil
}

// printer writes one line per update.
type printer struct {
	w      io.Writer
	json   bool
	tagged bool
}

// strategyColumn is the width of a tagged line's strategy column: the
// longest name, webhook. Fixed columns line the texts up under each other.
const strategyColumn = len("webhook")

// jsonLine is one line of -json output.
type jsonLine struct {
	ID        uint64    `json:"id"`
	Data      string    `json:"data"`
	Time      time.Time `json:"time"`
	Cursor    string    `json:"cursor"` // what -after takes to resume after this update
	Strategy  string    `json:"strategy"`
	LatencyMS float64   `json:"latency_ms"`
}

func (p printer) print(u Update, strategy, epoch string, received time.Time) error {
	latencyMS := float64(received.Sub(u.Time).Microseconds()) / 1000
	if p.tagged && !p.json {
		// The strategy and the latency come before the text: whatever the
		// text holds, it cannot change them.
		_, err := fmt.Fprintf(p.w, "%-*s %8s  %d %s\n", strategyColumn, strategy, fmt.Sprintf("%.1fms", latencyMS), u.ID, terminalSafe(u.Data))
		return err
	}
	if !p.json {
		_, err := fmt.Fprintf(p.w, "%d %s\n", u.ID, terminalSafe(u.Data))
		return err
	}
	line, err := json.Marshal(jsonLine{
		ID:        u.ID,
		Data:      u.Data,
		Time:      u.Time,
		Cursor:    feed.Cursor{After: u.ID, Epoch: epoch}.String(),
		Strategy:  strategy,
		LatencyMS: latencyMS,
	})
	if err != nil {
		return fmt.Errorf("encode update %d: %w", u.ID, err)
	}
	_, err = fmt.Fprintf(p.w, "%s\n", line)
	return err
}

// terminalSafe returns text as one line that a terminal shows as it is. The
// text is whatever anyone published: a newline in it would print a second
// line that looks like another update, and an escape sequence would reach the
// terminal, which obeys it (colours, cursor moves, even the window title).
// So every rune that is not graphic (controls, bidi overrides that reorder
// what follows, line separators) is written as its Go escape (\n, \x1b,
// \u202e), so is every byte that is not UTF-8 (\xe9), and a backslash is
// written \\, so that no two texts print the same. -json output needs none
// of this: JSON escapes what it must.
func terminalSafe(text string) string {
	var out strings.Builder
	out.Grow(len(text))
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&out, `\x%02x`, text[i])
		case r == '\\':
			out.WriteString(`\\`)
		case unicode.IsGraphic(r):
			out.WriteString(text[i : i+size])
		default:
			quoted := strconv.QuoteRune(r) // '\n', '\x1b', '\u202e'
			out.WriteString(quoted[1 : len(quoted)-1])
		}
		i += size
	}
	return out.String()
}
