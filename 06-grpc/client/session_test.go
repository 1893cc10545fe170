package client_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/client"
	"realtime/06-grpc/internal/testkit"
)

func TestSession_NeverPrintsAnUpdateTwice(t *testing.T) {
	var stdout, stderr testkit.Buffer
	s := client.NewSession(client.SessionOptions{Stdout: &stdout, Stderr: &stderr})

	for _, id := range []uint64{1, 2, 2, 1, 3} {
		require.NoError(t, s.Deliver(client.Update{ID: id, Data: "x"}))
	}

	assert.Equal(t, "1 x\n2 x\n3 x\n", stdout.String())
	assert.Empty(t, stderr.String())
	after, _ := s.Cursor()
	assert.Equal(t, uint64(3), after)
}

func TestSession_WarnsWhenIDsAreSkipped(t *testing.T) {
	var stdout, stderr testkit.Buffer
	s := client.NewSession(client.SessionOptions{After: 4, Stdout: &stdout, Stderr: &stderr})

	require.NoError(t, s.Deliver(client.Update{ID: 7, Data: "late"}))

	assert.Equal(t, "gap: updates 5 to 6 were never received\n", stderr.String())
	assert.Equal(t, "7 late\n", stdout.String(), "what did arrive is still printed")
}

func TestSession_PrintsJSONLinesWithLatency(t *testing.T) {
	var stdout testkit.Buffer
	sent := time.Date(2026, 11, 24, 19, 3, 11, 0, time.UTC)
	s := client.NewSession(client.SessionOptions{
		Strategy: "short",
		JSON:     true,
		Stdout:   &stdout,
		Now:      func() time.Time { return sent.Add(1500 * time.Microsecond) },
	})

	s.Answered("run-1")
	require.NoError(t, s.Deliver(client.Update{ID: 42, Data: `say "hi"`, Time: sent}))

	assert.JSONEq(t,
		`{"id":42,"data":"say \"hi\"","time":"2026-11-24T19:03:11Z","cursor":"run-1-42","strategy":"short","latency_ms":1.5}`,
		stdout.String())
}

func TestSession_GapMovesTheCursorToTheServersPosition(t *testing.T) {
	var stdout, stderr testkit.Buffer
	s := client.NewSession(client.SessionOptions{After: 9, Stdout: &stdout, Stderr: &stderr})

	s.Answered("run-2")
	s.Gap(3)

	after, epoch := s.Cursor()
	assert.Equal(t, uint64(3), after)
	assert.Equal(t, "run-2", epoch)
	assert.Equal(t, "gap: server cannot resume after update 9; updates may be missing; continuing from 3\n", stderr.String())
}

func TestSession_PrintsEachUpdateAsOneLineATerminalShowsAsItIs(t *testing.T) {
	tests := []struct{ name, data, want string }{
		{"a newline cannot forge a second update", "hello\n424242 FORGED", `hello\n424242 FORGED`},
		{"a carriage return cannot overwrite the line", "paid\rrefunded", `paid\rrefunded`},
		{"an ANSI escape does not reach the terminal", "\x1b[2J\x1b[31mred", `\x1b[2J\x1b[31mred`},
		{"a tab is shown, not expanded", "a\tb", `a\tb`},
		{"DEL and C1 controls are shown", "a\x7fb\u009bc", `a\x7fb\u009bc`},
		{"a bidi override cannot reorder the text", "abc\u202edcba", `abc\u202edcba`},
		{"line and paragraph separators are shown", "a\u2028b\u2029c", `a\u2028b\u2029c`},
		{"a backslash is escaped, so no text prints as another", `a\nb`, `a\\nb`},
		{"bytes that are not UTF-8 are shown", "caf\xe9", `caf\xe9`},
		{"ordinary UTF-8 is printed as it is", "café 東京 🙂", "café 東京 🙂"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var plain, jsonLines testkit.Buffer
			stderr := &testkit.Buffer{}
			u := client.Update{ID: 7, Data: tt.data}

			require.NoError(t, client.NewSession(client.SessionOptions{Stdout: &plain, Stderr: stderr}).Deliver(u))
			require.NoError(t, client.NewSession(client.SessionOptions{JSON: true, Stdout: &jsonLines, Stderr: stderr}).Deliver(u))

			assert.Equal(t, "7 "+tt.want+"\n", plain.String())
			require.Len(t, jsonLines.Lines(), 1, "-json prints one line too: %q", jsonLines.String())
			var line struct{ Data string }
			require.NoError(t, json.Unmarshal([]byte(jsonLines.String()), &line))
			assert.Equal(t, strings.ToValidUTF8(tt.data, "\uFFFD"), line.Data,
				"-json carries the text unchanged (JSON escapes what it must; bytes that are not UTF-8 become U+FFFD)")
		})
	}
}
