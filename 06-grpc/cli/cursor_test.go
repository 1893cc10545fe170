package cli_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/cli"
)

func TestEndToEnd_ACursorFromAnEarlierRunIsNeverServedSilently(t *testing.T) {
	first, url := startServer(t, "127.0.0.1:0")
	reader := start(t, cli.RunClient, "client", "-server", url, "-interval", "5ms", "-json")
	first.type_(t, "a", "b")
	var line struct{ Cursor string }
	require.NoError(t, json.Unmarshal([]byte(reader.waitForLines(t, 2)[1]), &line))
	require.NoError(t, reader.stop(t))
	assert.Contains(t, reader.stderr.String(), "stopped after update 2; resume with -after "+line.Cursor+"\n")

	second, url := startServer(t, "127.0.0.1:0") // a new run: ids start again at 1
	second.type_(t, "x", "y", "z")
	second.stdout.WaitFor(t, "published 3")
	resumed := start(t, cli.RunClient, "client", "-server", url, "-interval", "5ms", "-after", line.Cursor)

	resumed.stderr.WaitFor(t, "gap: server cannot resume after update 2; updates may be missing; continuing from 3\n")
	second.type_(t, "after the gap")
	assert.Equal(t, []string{"4 after the gap"}, resumed.waitForLines(t, 1),
		"run 2's update 3 is not what followed run 1's update 2")
}
