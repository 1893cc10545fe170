package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"realtime/06-grpc/feed"
)

// record is one line a client wrote, in the order it wrote them: an update it
// printed (stdout, -json) or a message (stderr).
type record struct {
	at      time.Time
	update  bool
	epoch   string
	id      uint64
	message string
}

// clientLog keeps what one client writes on stdout and stderr, in one order:
// the session writes both from one goroutine, so the order is the client's.
type clientLog struct {
	mu      sync.Mutex
	records []record
	bad     []string // lines that are neither an update nor a message
}

func (l *clientLog) stdout() *lineWriter { return &lineWriter{log: l, update: true} }
func (l *clientLog) stderr() *lineWriter { return &lineWriter{log: l} }

// lineWriter takes whole lines, as the session writes them.
type lineWriter struct {
	log    *clientLog
	update bool
	buf    []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	now := time.Now()
	w.log.mu.Lock()
	defer w.log.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(w.buf[:i])
		w.buf = w.buf[i+1:]
		if !w.update {
			w.log.records = append(w.log.records, record{at: now, message: line})
			continue
		}
		var u struct {
			ID     uint64 `json:"id"`
			Cursor string `json:"cursor"`
		}
		c, err := feed.Cursor{}, json.Unmarshal([]byte(line), &u)
		if err == nil {
			c, err = feed.ParseCursor(u.Cursor)
		}
		if err != nil || c.After != u.ID {
			w.log.bad = append(w.log.bad, line)
			continue
		}
		w.log.records = append(w.log.records, record{at: now, update: true, epoch: c.Epoch, id: u.ID})
	}
}

func (l *clientLog) snapshot() ([]record, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.records), slices.Clone(l.bad)
}

// caughtUp reports whether the client is done with run: it printed the
// run's last update, or, since the run began, the server told it that it
// could not resume and that it continues from that update (a client whose
// cursor is of an earlier run, as after a restart with nothing published
// since), and it printed nothing after that.
func (l *clientLog) caughtUp(run serverRun) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.records) - 1; i >= 0; i-- {
		r := l.records[i]
		if r.update {
			return r.epoch == run.epoch && r.id >= run.last
		}
		if !strings.HasPrefix(r.message, announcement) || r.at.Before(run.started) {
			continue
		}
		_, from, ok := strings.Cut(r.message, "; continuing from ")
		if id, err := strconv.ParseUint(from, 10, 64); ok && err == nil && id >= run.last {
			return true
		}
	}
	return false
}

// serverRun is one run of the server: its epoch, and the last id it
// published. Clustered, a run is the log's, and outlives the instances.
type serverRun struct {
	epoch   string
	last    uint64
	started time.Time // when the first process of the run was started
}

// Verdict is what the checker found in one client's output.
type Verdict struct {
	Strategy    string
	Printed     int // updates printed
	Lost        int // published updates never printed, announced or not
	Unannounced int // of those, the ones no message of the server announced: must be 0
	Duplicated  int // updates printed twice: must be 0
	Reordered   int // updates printed after a later one: must be 0
	Announced   int // the server's announcements that it could not resume
	Detected    int // gaps the client found on its own (the server skipped ids): counted as unannounced
	Malformed   int // lines that were neither an update nor a message: must be 0
}

// OK reports whether the client lost nothing it was not told about, and
// printed nothing twice or out of order.
func (v Verdict) OK() bool {
	return v.Unannounced == 0 && v.Duplicated == 0 && v.Reordered == 0 && v.Malformed == 0
}

func (v Verdict) problems() string {
	var p []string
	for _, c := range []struct {
		n    int
		what string
	}{{v.Unannounced, "lost without a word from the server"}, {v.Duplicated, "printed twice"}, {v.Reordered, "out of order"}, {v.Malformed, "malformed lines"}} {
		if c.n > 0 {
			p = append(p, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	return strings.Join(p, ", ")
}

// announcement is how the client says that the server could not resume
// (Session.Gap): after a restart, or a cursor older than the history.
const announcement = "gap: server cannot resume after update "

// detected is how the client says that the server skipped ids without a
// word (Session.Deliver): a fault of the server, never a fault of the
// network.
const detected = "gap: updates "

// check compares what a client printed with what the server runs
// published, in the style of Jepsen's total-queue checker: every published
// update must be printed exactly once, in order, unless the server
// announced that it could not resume, which covers what it skips.
func check(strategy string, records []record, bad []string, runs []serverRun) Verdict {
	v := Verdict{Strategy: strategy, Malformed: len(bad)}
	index := make(map[string]int, len(runs))
	for i, r := range runs {
		index[r.epoch] = i
	}
	seen := make(map[string]map[uint64]bool)
	cur, last := -1, uint64(0) // the run and the id of the last update printed
	announced := false         // since the last update printed
	lose := func(n uint64) {
		v.Lost += int(n)
		if !announced {
			v.Unannounced += int(n)
		}
	}
	for _, r := range records {
		if !r.update {
			switch {
			case strings.HasPrefix(r.message, announcement):
				v.Announced++
				announced = true
			case strings.HasPrefix(r.message, detected):
				v.Detected++
			}
			continue
		}
		run, ok := index[r.epoch]
		if !ok {
			v.Malformed++ // an epoch no server run had
			continue
		}
		if seen[r.epoch] == nil {
			seen[r.epoch] = make(map[uint64]bool)
		}
		if seen[r.epoch][r.id] {
			v.Duplicated++
			continue
		}
		seen[r.epoch][r.id] = true
		v.Printed++
		switch {
		case run < cur:
			v.Reordered++ // an update of an earlier run, after one of a later run
			continue
		case run > cur:
			if cur >= 0 {
				lose(runs[cur].last - min(last, runs[cur].last)) // the rest of the run it left
			}
			for skipped := cur + 1; skipped < run; skipped++ {
				lose(runs[skipped].last) // runs it never saw
			}
			cur, last = run, 0
		case r.id < last:
			v.Reordered++
			continue
		}
		if r.id > last+1 {
			lose(r.id - last - 1)
		}
		last, announced = r.id, false
	}
	// What the last run published after the last update printed: the
	// harness waits for every client to catch up, so this is a loss too.
	if cur >= 0 {
		lose(runs[cur].last - min(last, runs[cur].last))
		for skipped := cur + 1; skipped < len(runs); skipped++ {
			lose(runs[skipped].last)
		}
	} else {
		for _, r := range runs {
			lose(r.last)
		}
	}
	return v
}
