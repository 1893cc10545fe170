package server_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
)

// TestLongPoll_AnswersAsSoonAsAnUpdateArrives must prove that the poll was
// held before the update was published, or it would pass against a server
// that answers at once. A real server cannot show that: a hook that sees the
// request arrive cannot tell whether the handler is waiting yet. In a
// synctest bubble it can: synctest.Wait returns only once every goroutine in
// the bubble is durably blocked, here the handler holding the poll. The
// bubble has no real network, so the handler is called directly with a
// ResponseRecorder, which suits a handler that returns.
func TestLongPoll_AnswersAsSoonAsAnUpdateArrives(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, err := feed.New(8, feed.WithEpoch("run-1"))
		require.NoError(t, err)
		handler := server.New(log)
		answer := httptest.NewRecorder()
		returned := make(chan struct{})
		start := time.Now()
		go func() {
			defer close(returned)
			handler.ServeHTTP(answer, httptest.NewRequest(http.MethodGet, "http://localhost/updates?after=0&wait=60s", nil))
		}()

		synctest.Wait() // the handler is blocked, holding the poll
		select {
		case <-returned:
			t.Fatal("the poll was answered before anything was published: nothing was held")
		default:
		}
		u, err := log.Publish("taxi at the station")
		require.NoError(t, err)

		testkit.Receive(t, returned, "the held poll to be answered")
		assert.Zero(t, time.Since(start), "answered at once, not at the end of the wait")
		require.Equal(t, http.StatusOK, answer.Code)
		var got poll
		require.NoError(t, json.Unmarshal(answer.Body.Bytes(), &got), answer.Body.String())
		if diff := cmp.Diff(poll{Updates: []feed.Update{u.Update}, Last: 1, Epoch: "run-1"}, got); diff != "" {
			t.Errorf("mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestLongPoll_HoldsOnlyWhenThereIsNothingNew(t *testing.T) {
	srv, _ := start(t, 2)
	testkit.Publish(t, srv.URL, "a")
	testkit.Publish(t, srv.URL, "b")
	c := testkit.Publish(t, srv.URL, "c") // holds 2 and 3
	tests := []struct {
		name   string
		query  string
		status int
		want   poll
	}{
		{"the cursor is behind: at once", "?after=2&wait=60s", http.StatusOK, poll{Updates: []feed.Update{c}, Last: 3, Epoch: "run-1"}},
		{"the cursor cannot be served: at once", "?after=0&wait=60s", http.StatusGone, poll{Last: 3, Epoch: "run-1"}},
		{"a wait of zero is a short poll", "?after=3&wait=0s", http.StatusOK, poll{Updates: []feed.Update{}, Last: 3, Epoch: "run-1"}},
		{"nothing new: held, then no content", "?after=3&wait=20ms", http.StatusNoContent, poll{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, got := getUpdates(t, srv, tt.query)
			require.Equal(t, tt.status, resp.StatusCode)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLongPoll_AnswersNoContentWhenTheWaitEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, err := feed.New(8)
		require.NoError(t, err)
		handler := server.New(log)
		answer := httptest.NewRecorder()
		start := time.Now()

		handler.ServeHTTP(answer, httptest.NewRequest(http.MethodGet, "http://localhost/updates?after=0&wait=30s", nil))

		held := time.Since(start) // synctest's clock: no real 30 seconds pass
		assert.Equal(t, http.StatusNoContent, answer.Code)
		assert.Equal(t, "no-store", answer.Header().Get("Cache-Control"))
		assert.Empty(t, answer.Body.String())
		assert.GreaterOrEqual(t, held, 27*time.Second, "at most 10% jitter is taken off the wait")
		assert.LessOrEqual(t, held, 30*time.Second, "never longer than the client asked")
	})
}

func TestLongPoll_JittersTheHoldSoTimeoutsDoNotComeInHerds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, err := feed.New(8)
		require.NoError(t, err)
		handler := server.New(log)
		holds := make(map[time.Duration]bool)

		for range 20 {
			start := time.Now()
			handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "http://localhost/updates?wait=10s", nil))
			holds[time.Since(start)] = true
		}

		assert.Greater(t, len(holds), 10, "twenty polls that start together end at different times")
	})
}

func TestLongPoll_ReleasesTheWaitWhenTheClientGoesAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, err := feed.New(8)
		require.NoError(t, err)
		handler := server.New(log)
		ctx, leave := context.WithCancel(t.Context())
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://localhost/updates?after=0&wait=60s", nil)
		returned := make(chan struct{})
		start := time.Now()
		go func() {
			handler.ServeHTTP(httptest.NewRecorder(), req)
			close(returned)
		}()

		synctest.Wait() // the handler is blocked, holding the poll
		select {
		case <-returned:
			t.Fatal("the poll was answered at once: nothing was held")
		default:
		}
		leave()
		synctest.Wait()

		select {
		case <-returned:
		default:
			t.Fatal("the handler still holds a poll whose client left")
		}
		assert.Zero(t, time.Since(start), "released at once, not at the end of the wait")
	})
}

func TestLongPoll_ReleasesWaitsWhenTheServerShutsDown(t *testing.T) {
	log, err := feed.New(8)
	require.NoError(t, err)
	serverCtx, shutdown := context.WithCancel(context.Background())
	defer shutdown()
	handler := server.New(log)
	arrived := make(chan struct{}, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		handler.ServeHTTP(w, r)
	}))
	srv.Config.BaseContext = func(net.Listener) context.Context { return serverCtx } // as RunServer does
	srv.Start()
	defer srv.Close()
	type answer struct {
		resp *http.Response
		err  error
	}
	answers := make(chan answer, 1)
	go func() { // require cannot stop the test from here: the test's goroutine checks
		resp, err := srv.Client().Get(srv.URL + "/updates?after=0&wait=60s")
		if err == nil {
			resp.Body.Close()
		}
		answers <- answer{resp, err}
	}()

	testkit.Receive(t, arrived, "the poll to reach the server")
	shutdown()

	got := testkit.Receive(t, answers, "the held poll to be answered when the server stops")
	require.NoError(t, got.err)
	assert.Equal(t, http.StatusNoContent, got.resp.StatusCode, "nothing new: the client polls again")
}

func TestLongPoll_OutlivesTheServersWriteTimeout(t *testing.T) {
	log, err := feed.New(8)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(server.New(log))
	srv.Config.WriteTimeout = 50 * time.Millisecond // far shorter than the hold
	srv.Start()
	defer srv.Close()

	resp, body := get(t, srv, http.MethodGet, "/updates?after=0&wait=300ms", nil)

	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Empty(t, body)
}

func TestLongPoll_RefusesMalformedWaits(t *testing.T) {
	srv, _ := start(t, 8)
	tests := []struct {
		name, query, reason string
	}{
		{"no unit", "?wait=10", `wait: "10" is not a duration such as 30s`},
		{"not a duration", "?wait=soon", `wait: "soon" is not a duration such as 30s`},
		{"empty", "?wait=", `wait: "" is not a duration such as 30s`},
		{"negative", "?wait=-1s", `wait: -1s is negative`},
		{"over a minute", "?wait=61s", `wait: 1m1s is longer than the longest wait, 1m0s`},
		{"an hour", "?wait=1h", `wait: 1h0m0s is longer than the longest wait, 1m0s`},
		{"a bad cursor with it", "?after=x&wait=1s", `after: "x" is not an update id such as 42, or EPOCH-42`},
		{"given twice", "?wait=1s&wait=2s", "wait: given 2 times; give it once"},
		{"absurdly long, echoed only in part", "?wait=" + strings.Repeat("s", 5000), `wait: "` + strings.Repeat("s", 100) + `"… (5000 bytes) is not a duration such as 30s`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, srv, http.MethodGet, "/updates"+tt.query, nil)
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
			assert.Equal(t, tt.reason+"\n", body)
		})
	}
}
