package client_test

import (
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/client"
)

// readAll returns every event the stream dispatches, and its reconnection
// time at the end ("" when never set).
func readAll(tb testing.TB, r io.Reader) ([]client.Event, string) {
	tb.Helper()
	stream := client.NewEventStream(r)
	var events []client.Event
	for {
		e, err := stream.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(tb, err)
		events = append(events, e)
	}
	retry := ""
	if d, ok := stream.Retry(); ok {
		retry = d.String()
	}
	return events, retry
}

func msg(data, id string) client.Event {
	return client.Event{Type: "message", Data: data, LastEventID: id}
}

func TestEventStream_FollowsTheWHATWGParsingRules(t *testing.T) {
	tests := []struct {
		name   string
		stream string
		want   []client.Event
		retry  string
	}{
		{"LF line ends", "data: a\n\ndata: b\n\n", []client.Event{msg("a", ""), msg("b", "")}, ""},
		{"CRLF line ends", "data: a\r\n\r\ndata: b\r\n\r\n", []client.Event{msg("a", ""), msg("b", "")}, ""},
		{"CR line ends", "data: a\r\rdata: b\r\r", []client.Event{msg("a", ""), msg("b", "")}, ""},
		{"mixed line ends", "data: a\r\ndata: b\rdata: c\n\r\n", []client.Event{msg("a\nb\nc", "")}, ""},
		{"one leading BOM is ignored", "\uFEFFdata: a\n\n", []client.Event{msg("a", "")}, ""},
		{"a second BOM is part of the field name", "\uFEFF\uFEFFdata: a\n\ndata: b\n\n", []client.Event{msg("b", "")}, ""},
		{"a BOM later is data", "data: \uFEFFa\n\n", []client.Event{msg("\uFEFFa", "")}, ""},
		{"comments are ignored", ": ping\ndata: a\n: more\n\n", []client.Event{msg("a", "")}, ""},
		{"a comment alone dispatches nothing", ": ping\n\n", nil, ""},
		{"data without a colon is an empty line of data", "data\ndata\n\n", []client.Event{msg("\n", "")}, ""},
		{"multi-line data is joined with LF", "data: a\ndata: b\ndata: c\n\n", []client.Event{msg("a\nb\nc", "")}, ""},
		{"one space after the colon is removed", "data:  a\n\n", []client.Event{msg(" a", "")}, ""},
		{"no space after the colon is fine", "data:a\n\n", []client.Event{msg("a", "")}, ""},
		{"a colon in the value is kept", "data: a: b\n\n", []client.Event{msg("a: b", "")}, ""},
		{"the event field names the type", "event: reset\ndata: 5\n\n", []client.Event{{Type: "reset", Data: "5"}}, ""},
		{"the type resets after each event", "event: reset\ndata: 5\n\ndata: a\n\n", []client.Event{{Type: "reset", Data: "5"}, msg("a", "")}, ""},
		{"an empty type is message", "event:\ndata: a\n\n", []client.Event{msg("a", "")}, ""},
		{"id sets the last event ID", "id: 7\ndata: a\n\n", []client.Event{msg("a", "7")}, ""},
		{"the last event ID persists", "id: 7\ndata: a\n\ndata: b\n\n", []client.Event{msg("a", "7"), msg("b", "7")}, ""},
		{"an empty id resets it", "id: 7\ndata: a\n\nid\ndata: b\n\n", []client.Event{msg("a", "7"), msg("b", "")}, ""},
		{"an id containing NUL is ignored", "id: 7\ndata: a\n\nid: 8\x009\ndata: b\n\n", []client.Event{msg("a", "7"), msg("b", "7")}, ""},
		{"an id without data still sets the ID", "id: 7\n\ndata: a\n\n", []client.Event{msg("a", "7")}, ""},
		{"retry of digits sets the reconnection time", "retry: 2500\n\n", nil, "2.5s"},
		{"retry with anything else is ignored", "retry: 2500\nretry: 1s\nretry: -1\nretry: 1 \nretry:\n\n", nil, "2.5s"},
		{"unknown fields are ignored", "foo: bar\ndata: a\nDATA: b\n\n", []client.Event{msg("a", "")}, ""},
		{"an event without data is not dispatched", "event: reset\n\ndata: a\n\n", []client.Event{msg("a", "")}, ""},
		{"only a blank line dispatches", "data: a\ndata: b", nil, ""},
		{"a partial event at the end is dropped", "data: a\n\ndata: b\n", []client.Event{msg("a", "")}, ""},
		{"a partial line at the end is dropped", "data: a\n\ndata: b", []client.Event{msg("a", "")}, ""},
		{"blank lines alone dispatch nothing", "\n\n\r\n\r", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, retry := readAll(t, strings.NewReader(tt.stream))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
			assert.Equal(t, tt.retry, retry)

			// The same stream one byte at a time: a CR at the end of one read
			// and its LF at the start of the next are still one line end.
			got, retry = readAll(t, iotest.OneByteReader(strings.NewReader(tt.stream)))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("one byte at a time: mismatch (-want +got):\n%s", diff)
			}
			assert.Equal(t, tt.retry, retry, "one byte at a time")
		})
	}
}

func TestEventStream_RefusesAnEndlessLine(t *testing.T) {
	stream := client.NewEventStream(strings.NewReader("data: " + strings.Repeat("x", client.MaxEventBytes) + "\n\n"))

	_, err := stream.Next()

	assert.ErrorContains(t, err, "event stream: line longer than")
}

func TestEventStream_RefusesAnEndlessEvent(t *testing.T) {
	line := "data: " + strings.Repeat("x", 1000) + "\n"
	stream := client.NewEventStream(strings.NewReader(strings.Repeat(line, client.MaxEventBytes/1000+1) + "\n"))

	_, err := stream.Next()

	assert.ErrorContains(t, err, "event stream: event larger than")
}

// FuzzEventStream checks that no input panics the parser, and that it
// agrees with referenceParse, a deliberately simple parser that reads the
// whole input at once.
func FuzzEventStream(f *testing.F) {
	for _, seed := range []string{
		"data: a\n\n", "id: 1\r\ndata: {\"id\":1}\r\n\r\n", "\uFEFFevent: reset\rdata: 5\r\r",
		": ping\n\n", "retry: 100\ndata\n\n", "id: a\x00b\ndata: x\n\n", "data: a\r", "data: a\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		want, wantRetry := referenceParse(string(input))
		got, gotRetry := readAll(t, iotest.HalfReader(strings.NewReader(string(input))))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("input %q (-reference +parser):\n%s", input, diff)
		}
		if wantRetry != gotRetry {
			t.Fatalf("input %q: retry %q, reference %q", input, gotRetry, wantRetry)
		}
	})
}

var lineEnd = regexp.MustCompile("\r\n|\r|\n")

// referenceParse splits the whole stream into lines first and then applies
// the field rules: simple enough to check by reading, and built differently
// from the incremental parser.
func referenceParse(stream string) ([]client.Event, string) {
	stream = strings.TrimPrefix(stream, "\uFEFF")
	lines := lineEnd.Split(stream, -1)
	lines = lines[:len(lines)-1] // after the last line end: an unfinished line
	var events []client.Event
	var typ, data, id, retry string
	hasData := false
	for _, line := range lines {
		if line == "" {
			if hasData {
				if typ == "" {
					typ = "message"
				}
				events = append(events, client.Event{Type: typ, Data: strings.TrimSuffix(data, "\n"), LastEventID: id})
			}
			typ, data, hasData = "", "", false
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "event":
			typ = value
		case "data":
			data += value + "\n"
			hasData = true
		case "id":
			if !strings.Contains(value, "\x00") {
				id = value
			}
		case "retry":
			if value != "" && strings.Trim(value, "0123456789") == "" && len(value) < 10 {
				retry = (time.Duration(atoi(value)) * time.Millisecond).String()
			}
		}
	}
	return events, retry
}

func atoi(digits string) int {
	n := 0
	for _, c := range digits {
		n = n*10 + int(c-'0')
	}
	return n
}
