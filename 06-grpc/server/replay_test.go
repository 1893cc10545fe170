package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/server"
)

// worstCase is the update text that JSON makes largest: every byte a
// control character, escaped as six ("\u0001").
var worstCase = strings.Repeat("\x01", feed.MaxDataBytes)

// worstCases are the texts that cost a replay most: worstCase, and every
// byte a '<', which an encoder that escapes HTML would write as six bytes
// ("\u003c") too, while the log, which does not, counts it as one.
var worstCases = map[string]string{
	"control characters": worstCase,
	"angle brackets":     strings.Repeat("<", feed.MaxDataBytes),
}

// replayer reads every update after 0 from srv, as a client catching up
// does, and returns how many it got.
type replayer func(ctx context.Context, srv *httptest.Server) (int, error)

// replayers are the ways a client catches up with the whole history.
var replayers = map[string]replayer{
	"short poll":   pollAll,
	"event stream": streamAll,
}

// pollAll asks GET /updates again after each answer until it has the newest.
func pollAll(ctx context.Context, srv *httptest.Server) (int, error) {
	var after, got uint64
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/updates?after=%d", srv.URL, after), nil)
		if err != nil {
			return 0, err
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			return 0, err
		}
		var answer struct {
			Updates []struct{ ID uint64 } `json:"updates"`
			Last    uint64                `json:"last"`
		}
		err = json.NewDecoder(resp.Body).Decode(&answer)
		resp.Body.Close()
		if err != nil {
			return 0, fmt.Errorf("after %d: %s: %w", after, resp.Status, err)
		}
		for _, u := range answer.Updates {
			if u.ID != after+1 {
				return 0, fmt.Errorf("after %d: got update %d", after, u.ID)
			}
			after = u.ID
			got++
		}
		if after == answer.Last {
			return int(got), nil
		}
	}
}

// streamAll reads GET /events?after=0 until the update the hello named as
// the newest.
func streamAll(ctx context.Context, srv *httptest.Server) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events?after=0", nil)
	if err != nil {
		return 0, err
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	lines := bufio.NewReader(resp.Body)
	var last, got uint64
	for {
		line, err := lines.ReadSlice('\n')
		for errors.Is(err, bufio.ErrBufferFull) { // a long data line: skip the rest
			_, err = lines.ReadSlice('\n')
		}
		if err != nil {
			return int(got), err
		}
		switch {
		case bytes.HasPrefix(line, []byte(`data: {"last":`)): // the hello
			var hello struct{ Last uint64 }
			if err := json.Unmarshal(line[len("data: "):], &hello); err != nil {
				return 0, err
			}
			last = hello.Last
		case bytes.HasPrefix(line, []byte("id: ")):
			cursor, err := feed.ParseCursor(string(bytes.TrimSpace(line[len("id: "):])))
			if err != nil {
				return 0, err
			}
			if cursor.After != got+1 {
				return 0, fmt.Errorf("after %d: got update %d", got, cursor.After)
			}
			got++
			if got == last {
				return int(got), nil
			}
		}
	}
}

// replayAll has clients catch up at once with a history of n worst-case
// updates, each with replay, and returns how far the heap grew meanwhile,
// measured with the collector set to gcPercent (see peakHeapGrowth).
func replayAll(tb testing.TB, replay replayer, text string, n, clients, gcPercent int) (growth uint64) {
	tb.Helper()
	log, err := feed.New(n)
	require.NoError(tb, err)
	for range n {
		_, err := log.Publish(text)
		require.NoError(tb, err)
	}
	srv := httptest.NewServer(server.New(log))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	got := make(chan error, clients)
	growth = peakHeapGrowth(gcPercent, func() {
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				count, err := replay(ctx, srv)
				if err == nil && count != n {
					err = fmt.Errorf("got %d of %d updates", count, n)
				}
				got <- err
			})
		}
		wg.Wait()
	})
	for range clients {
		assert.NoError(tb, <-got, "every client receives every update")
	}
	return growth
}

// peakHeapGrowth runs f and returns the most the heap's objects grew over
// their size before it, sampled every millisecond. Garbage counts too until
// it is collected, so the collector runs when the heap has grown by
// gcPercent of what is live, instead of the default 100%: the lower, the
// closer the figure is to memory held, and the slower f runs.
func peakHeapGrowth(gcPercent int, f func()) uint64 {
	defer debug.SetGCPercent(debug.SetGCPercent(gcPercent))
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 {
		metrics.Read(sample)
		return sample[0].Value.Uint64()
	}
	base, peak := read(), uint64(0)

	done, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		ticker := time.NewTicker(time.Millisecond)
		defer ticker.Stop()
		for {
			if now := read(); now > base && now-base > peak {
				peak = now - base
			}
			select {
			case <-done:
				return
			case <-ticker.C:
			}
		}
	}()
	f()
	close(done)
	<-sampled
	return peak
}

func TestReplay_CostsMemoryInProportionToABatchNotToTheHistory(t *testing.T) {
	// 32 worst-case updates are 12 MiB of JSON: two clients catching up
	// with it in one buffer each grew the heap by about 60 MiB.
	const n, clients, limit = 32, 2, 16 << 20
	for name, replay := range replayers {
		for kind, text := range worstCases {
			t.Run(name+", "+kind, func(t *testing.T) {
				growth := replayAll(t, replay, text, n, clients, 20) // 20% of at most ~14 MiB live
				assert.LessOrEqual(t, growth, uint64(limit), "heap grew by %d MiB", growth>>20)
			})
		}
	}
}

// BenchmarkReplay_WorstCaseHistory measures the heap growth of eight
// clients catching up at once with a full default history of worst-case
// updates (1,024 × 64 KiB, about 384 MiB of JSON). Run it with
//
//	go test ./server -run '^$' -bench Replay -benchtime 1x
func BenchmarkReplay_WorstCaseHistory(b *testing.B) {
	for name, replay := range replayers {
		for kind, text := range worstCases {
			b.Run(name+", "+kind, func(b *testing.B) {
				var growth uint64
				for b.Loop() {
					// 5% of the at most ~450 MiB the log holds is about 22 MiB of garbage.
					growth = max(growth, replayAll(b, replay, text, feed.DefaultHistory, 8, 5))
				}
				b.ReportMetric(float64(growth)/(1<<20), "peak-heap-growth-MiB")
			})
		}
	}
}

func TestShortPoll_AnswersInBoundedBatches(t *testing.T) {
	tests := []struct {
		name      string
		text      string
		published int
		wantFirst int // updates in the answer to after=0
	}{
		{"at most 256 updates", "a", 300, 256},
		{"at most 1 MiB of JSON, here two 384 KiB updates", worstCase, 4, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, log := start(t, 512)
			for range tt.published {
				_, err := log.Publish(tt.text)
				require.NoError(t, err)
			}

			resp, first := getUpdates(t, srv, "?after=0")
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Len(t, first.Updates, tt.wantFirst)
			assert.Equal(t, uint64(tt.published), first.Last, "last says there is more")

			_, rest := getUpdates(t, srv, fmt.Sprintf("?after=%d", tt.wantFirst))
			require.NotEmpty(t, rest.Updates)
			assert.Equal(t, uint64(tt.wantFirst+1), rest.Updates[0].ID, "the next batch carries on from the last id")
		})
	}
}

func TestShortPoll_RefusesAQueryThatDoesNotParse(t *testing.T) {
	srv, _ := start(t, 8)
	tests := []struct{ name, query, reason string }{
		{"a bad escape", "?after=%zz", `query "after=%zz": invalid URL escape "%zz"`},
		{"a semicolon", "?after=1;x=2", `query "after=1;x=2": invalid semicolon separator in query`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, http.MethodGet, "/updates"+tt.query, nil)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode, "never read as after=0")
			assert.Equal(t, tt.reason+"\n", body)
		})
	}
}

func TestGuard_RepeatsAtMostAHundredBytesOfARefusedRequest(t *testing.T) {
	srv, _ := start(t, 8)
	long := strings.Repeat("a", 100_000)

	req, err := http.NewRequest(http.MethodGet, srv.URL+"/updates", nil)
	require.NoError(t, err)
	req.Host = long + ".example"
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusMisdirectedRequest, resp.StatusCode)
	assert.Less(t, len(body), 500, "the reason, not the Host echoed back")

	req, err = http.NewRequest(http.MethodPost, srv.URL+"/"+long, strings.NewReader("x"))
	require.NoError(t, err)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err = srv.Client().Do(req)
	require.NoError(t, err)
	body, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	assert.Less(t, len(body), 500, "the reason, not the path echoed back")
}
