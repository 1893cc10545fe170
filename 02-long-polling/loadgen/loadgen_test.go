package loadgen_test

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"realtime/02-long-polling/feed"
	"realtime/02-long-polling/loadgen"
	"realtime/02-long-polling/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun_ShortPollingReportsAnswersAndPercentiles(t *testing.T) {
	log, err := feed.New(feed.DefaultHistory)
	require.NoError(t, err)
	srv := httptest.NewServer(server.New(log))
	defer srv.Close()
	var stdout, stderr bytes.Buffer

	err = loadgen.Run(t.Context(), []string{"loadgen", "-server", srv.URL, "-clients", "5",
		"-interval", "10ms", "-duration", "200ms", "-publish-rate", "50"}, &stdout, &stderr)

	require.NoError(t, err, stderr.String())
	assert.Regexp(t, `^short polling: 5 clients every 10ms for 200ms, \d+ updates published\n\d+ answers \(\d+/s\), 0 errors; answer time p50 \S+, p99 \S+, max \S+\n$`, stdout.String())
	assert.NotZero(t, log.Last(), "the load generator published")
}

func TestRun_RefusesBadFlags(t *testing.T) {
	for name, args := range map[string][]string{
		"zero clients":     {"-clients", "0"},
		"unknown strategy": {"-strategy", "pigeon"},
		"server not a URL": {"-server", "::"},
	} {
		t.Run(name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := loadgen.Run(t.Context(), append([]string{"loadgen"}, args...), &stdout, &stderr)
			assert.Error(t, err)
		})
	}
}
