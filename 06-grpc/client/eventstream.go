package client

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// MaxEventBytes bounds one line and one event of an event stream, so a
// server that never ends a line cannot make the client grow without limit.
// The largest event this project sends is a 64 KiB update, JSON-escaped.
const MaxEventBytes = 1 << 20

// Event is one dispatched server-sent event.
type Event struct {
	Type        string // "message" unless the stream named another type
	Data        string // the data lines, joined with "\n"
	LastEventID string // the stream's last event ID when it was dispatched
}

// EventStream reads text/event-stream as the WHATWG HTML standard's
// "interpreting an event stream" says: CR, LF and CRLF end lines; one leading
// BOM is skipped; lines starting with ":" are comments; a field without a
// colon has an empty value; one space after the colon is dropped; "data"
// lines are joined with "\n"; an "id" containing NUL is ignored and the last
// event ID persists across events; "retry" counts only when it is all digits;
// other fields are ignored; an event is dispatched only by a blank line, and
// only if it has data; a partial event at the end of the stream is dropped.
type EventStream struct {
	r         *bufio.Reader
	firstLine bool // the BOM can only start the first line
	skipLF    bool // the last line ended with CR: a following LF is part of that end

	eventType   string
	data        strings.Builder
	hasData     bool
	lastEventID string
	retry       time.Duration
	hasRetry    bool
}

// NewEventStream reads events from r.
func NewEventStream(r io.Reader) *EventStream {
	return &EventStream{r: bufio.NewReader(r), firstLine: true}
}

// Retry returns the reconnection time the stream asked for, if it did.
func (s *EventStream) Retry() (time.Duration, bool) { return s.retry, s.hasRetry }

// LastEventID returns the stream's last event ID.
func (s *EventStream) LastEventID() string { return s.lastEventID }

// Next returns the next dispatched event. At the end of the stream it
// returns io.EOF, and whatever event was unfinished is dropped.
func (s *EventStream) Next() (Event, error) {
	for {
		line, err := s.readLine()
		if err != nil {
			return Event{}, err
		}
		if line == "" {
			if e, ok := s.dispatch(); ok {
				return e, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // a comment, such as a heartbeat
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			s.eventType = value
		case "data":
			if s.data.Len()+len(value) >= MaxEventBytes {
				return Event{}, fmt.Errorf("event stream: event larger than %d bytes", MaxEventBytes)
			}
			s.data.WriteString(value)
			s.data.WriteByte('\n')
			s.hasData = true
		case "id":
			if !strings.Contains(value, "\x00") {
				s.lastEventID = value
			}
		case "retry":
			// All digits, as the standard says; more than nine (days) would
			// overflow a Duration, and are ignored too.
			if ms, err := strconv.ParseUint(value, 10, 64); err == nil && len(value) <= 9 && value[0] != '+' {
				s.retry, s.hasRetry = time.Duration(ms)*time.Millisecond, true
			}
		}
	}
}

// dispatch ends the event being read. It reports false when there is no
// event to hand out (no data lines), as the standard says.
func (s *EventStream) dispatch() (Event, bool) {
	defer func() {
		s.eventType, s.hasData = "", false
		s.data.Reset()
	}()
	if !s.hasData {
		return Event{}, false
	}
	e := Event{Type: s.eventType, Data: strings.TrimSuffix(s.data.String(), "\n"), LastEventID: s.lastEventID}
	if e.Type == "" {
		e.Type = "message"
	}
	return e, true
}

// readLine returns the next line without its end. A line not yet ended when
// the stream ends is dropped: io.EOF.
func (s *EventStream) readLine() (string, error) {
	var line []byte
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			return "", err
		}
		if s.skipLF {
			s.skipLF = false
			if b == '\n' {
				continue
			}
		}
		switch b {
		case '\n', '\r':
			s.skipLF = b == '\r'
			text := string(line)
			if s.firstLine {
				s.firstLine = false
				text = strings.TrimPrefix(text, "\uFEFF")
			}
			return text, nil
		}
		if len(line) >= MaxEventBytes {
			return "", errors.New("event stream: line longer than 1 MiB")
		}
		line = append(line, b)
	}
}
