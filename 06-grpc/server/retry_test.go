package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
	"realtime/06-grpc/webhook"
)

// answers returns a receiver's answer function that gives the statuses in
// turn, and 200 after them.
func answers(statuses ...int) func(http.ResponseWriter, *http.Request) int {
	var mu sync.Mutex
	return func(w http.ResponseWriter, r *http.Request) int {
		mu.Lock()
		defer mu.Unlock()
		if len(statuses) == 0 {
			return http.StatusOK
		}
		status := statuses[0]
		statuses = statuses[1:]
		if status/100 == 3 {
			w.Header().Set("Location", "/elsewhere")
		}
		return status
	}
}

// startRetrying is start with a backoff of a millisecond.
func startRetrying(tb testing.TB, opts ...server.Option) *httptest.Server {
	tb.Helper()
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(tb, err)
	api := server.New(log, append([]server.Option{server.WithWebhookBackoff(time.Millisecond, time.Millisecond)}, opts...)...)
	srv := httptest.NewServer(api)
	tb.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(tb, api)
	return srv
}

func TestWebhook_RetriesWithTheSameIDUntilTheReceiverAccepts(t *testing.T) {
	srv := startRetrying(t)
	paths := make(chan string, 8)
	answer := answers(500, 503, 302, 200)
	rcv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) int {
		paths <- r.URL.Path
		return answer(w, r)
	})
	reg := register(t, srv, rcv.URL+"/hook", `0`)

	testkit.Publish(t, srv.URL, "once")

	for i := range 4 {
		d := rcv.next(t, reg.Secret)
		assert.Equal(t, "msg_run-1-1", d.header.Get(webhook.HeaderID), "attempt %d", i+1)
		assert.Equal(t, "/hook", <-paths, "attempt %d: a redirect is not followed", i+1)
	}
	got := waitState(t, srv, reg.ID, "the delivery", func(s registration) bool { return s.Delivered == 1 })
	assert.Zero(t, got.Failures, "failures since the last success")
	assert.NotEmpty(t, got.LastSuccess)
}

func TestWebhook_TellsWhyTheLastAttemptFailed(t *testing.T) {
	srv := startRetrying(t, server.WithWebhookBackoff(time.Hour, time.Hour))
	rcv := newReceiver(t, answers(500))
	reg := register(t, srv, rcv.URL+"/hook", `0`)

	testkit.Publish(t, srv.URL, "once")

	got := waitState(t, srv, reg.ID, "a failure", func(s registration) bool { return s.Failures == 1 })
	assert.Contains(t, got.LastError, "500 Internal Server Error")
	assert.NotEmpty(t, got.NextAttempt)
	assert.False(t, got.Disabled)
}

func TestWebhook_ConsecutiveFailuresDisableTheRegistration(t *testing.T) {
	srv := startRetrying(t, server.WithWebhookMaxFailures(3))
	rcv := newReceiver(t, answers(500, 500, 500, 500))
	reg := register(t, srv, rcv.URL+"/hook", `0`)

	testkit.Publish(t, srv.URL, "once")

	got := waitState(t, srv, reg.ID, "disabled", func(s registration) bool { return s.Disabled })
	assert.Equal(t, "3 deliveries in a row failed; the last: receiver answered 500 Internal Server Error", got.Reason)
	assert.Equal(t, 3, got.Failures)
	assert.Empty(t, got.NextAttempt)
}

// bubble runs a receiver, the server's handler and its log in a synctest
// bubble: its clock moves only when every goroutine in it waits, so the
// backoff and timeouts of a minute take no time, and their lengths are
// exact. A real socket would keep the clock still (a goroutine reading one
// is never durably blocked), so the receiver is a real http.Server on an
// in-memory network.
type bubble struct {
	log   *feed.Log
	api   *server.Server
	net   *pipeNet
	tries chan time.Time // when each delivery attempt reached the receiver
}

func newBubble(t *testing.T, answer func(http.ResponseWriter, *http.Request) int, opts ...server.Option) *bubble {
	b := &bubble{net: newPipeNet(), tries: make(chan time.Time, 64)}
	var err error
	b.log, err = feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	rcv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.tries <- time.Now()
		w.WriteHeader(answer(w, r))
	})}
	go func() { _ = rcv.Serve(b.net) }()
	b.api = server.New(b.log, append([]server.Option{server.WithWebhookDialer(b.net.DialContext)}, opts...)...)
	t.Cleanup(func() {
		require.NoError(t, b.api.Shutdown(context.Background()))
		require.NoError(t, rcv.Close())
	})
	return b
}

// register registers the receiver without a network: the request goes to
// the handler directly.
func (b *bubble) register(t *testing.T) string {
	rec := httptest.NewRecorder()
	b.api.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "http://localhost/webhooks", strings.NewReader(`{"url":"http://127.0.0.1:9/hook"}`)))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	return rec.Header().Get("Location")
}

// state asks the handler for the registration at location (its path), as
// GET /webhooks/{id} answers.
func (b *bubble) state(t *testing.T, location string) registration {
	rec := httptest.NewRecorder()
	b.api.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://localhost"+location, nil))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var reg registration
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &reg), rec.Body.String())
	return reg
}

func TestWebhook_410DisablesTheRegistration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, answers(http.StatusGone), server.WithWebhookBackoff(time.Second, time.Second))
		location := b.register(t)
		_, err := b.log.Publish("once")
		require.NoError(t, err)
		<-b.tries
		synctest.Wait()

		got := b.state(t, location)
		assert.True(t, got.Disabled)
		assert.Contains(t, got.Reason, "410 Gone")
		_, err = b.log.Publish("twice")
		require.NoError(t, err)
		time.Sleep(time.Hour) // in the bubble: an hour of fake time, in no time
		assert.Empty(t, b.tries, "attempts after the registration was disabled")
	})
}

func TestWebhook_KeepsNoMoreOfARefusalThanItsStatus(t *testing.T) {
	srv := startRetrying(t, server.WithWebhookBackoff(time.Hour, time.Hour))
	for name, tc := range map[string]struct {
		answer string // written raw, after the request
		want   string
	}{
		"a status line of 8 KiB": {
			"HTTP/1.1 500 " + strings.Repeat("x", 8<<10) + "\r\nContent-Length: 0\r\n\r\n",
			"receiver answered 500 Internal Server Error",
		},
		"headers of 1 MiB": {
			"HTTP/1.1 500 Oops\r\nX-Junk: " + strings.Repeat("x", 1<<20) + "\r\nContent-Length: 0\r\n\r\n",
			"server response headers exceeded",
		},
	} {
		t.Run(name, func(t *testing.T) {
			rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				conn, buf, err := http.NewResponseController(w).Hijack()
				if err != nil {
					return
				}
				defer conn.Close()
				_, _ = buf.WriteString(tc.answer)
				_ = buf.Flush()
			}))
			t.Cleanup(rcv.Close)
			reg := register(t, srv, rcv.URL+"/hook", `0`)

			testkit.Publish(t, srv.URL, "for "+name)

			got := waitState(t, srv, reg.ID, "a failure", func(s registration) bool { return s.Failures > 0 })
			assert.Contains(t, got.LastError, tc.want)
			assert.Less(t, len(got.LastError), 200, "what the registration keeps of the answer")
		})
	}
}

func TestWebhook_ReadsAtMost4KiBOfAnAnswer(t *testing.T) {
	srv := startRetrying(t)
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		chunk := []byte(strings.Repeat("x", 32<<10))
		for { // until the sender hangs up
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(endless.Close)
	reg := register(t, srv, endless.URL+"/hook", `0`)

	testkit.Publish(t, srv.URL, "once")

	waitState(t, srv, reg.ID, "the delivery, answered 200 with an endless body", func(s registration) bool { return s.Delivered == 1 })
}

func TestWebhook_BacksOffExponentiallyWithFullJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBubble(t, answers(500, 500, 500, 500, 500), server.WithWebhookBackoff(time.Second, 4*time.Second))
		b.register(t)
		_, err := b.log.Publish("once")
		require.NoError(t, err)

		prev := <-b.tries
		// Full jitter: the wait after the n-th failure is anywhere in
		// [0, min(base·2ⁿ⁻¹, max)), so a crowd of senders spreads out.
		for n, ceiling := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second} {
			next := <-b.tries
			assert.Less(t, next.Sub(prev), ceiling, "wait after failure %d", n+1)
			prev = next
		}
	})
}

func TestWebhook_WaitsAsLongAsRetryAfterSays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var answered atomic.Bool
		b := newBubble(t, func(w http.ResponseWriter, r *http.Request) int {
			if !answered.Swap(true) {
				w.Header().Set("Retry-After", "120")
				return http.StatusTooManyRequests
			}
			return http.StatusOK
		}, server.WithWebhookBackoff(time.Second, time.Second))
		b.register(t)
		_, err := b.log.Publish("once")
		require.NoError(t, err)

		refused := <-b.tries
		accepted := <-b.tries

		assert.Equal(t, 120*time.Second, accepted.Sub(refused))
	})
}

func TestWebhook_GivesUpOnAnAttemptAfterTheTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var answered atomic.Bool
		b := newBubble(t, func(w http.ResponseWriter, r *http.Request) int {
			if !answered.Swap(true) {
				<-release // a receiver that never answers
			}
			return http.StatusOK
		}, server.WithWebhookBackoff(time.Nanosecond, time.Nanosecond))
		defer close(release)
		b.register(t)
		_, err := b.log.Publish("once")
		require.NoError(t, err)

		first := <-b.tries
		second := <-b.tries

		assert.Equal(t, server.DefaultWebhookTimeout, second.Sub(first).Round(time.Second))
	})
}

// pipeNet is an in-memory network: Dial hands one end of a net.Pipe to
// Accept. Goroutines blocked on it are durably blocked, as synctest needs.
type pipeNet struct {
	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
}

func newPipeNet() *pipeNet { return &pipeNet{conns: make(chan net.Conn), closed: make(chan struct{})} }

func (p *pipeNet) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case p.conns <- server:
		return client, nil
	case <-p.closed:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.closed:
		return nil, net.ErrClosed
	}
}

func (p *pipeNet) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

func (p *pipeNet) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

func TestShutdown_LetsADeliveryInFlightFinishButStartsNoOther(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		arrived, answer := make(chan struct{}), make(chan struct{})
		b := newBubble(t, func(w http.ResponseWriter, r *http.Request) int {
			close(arrived)
			<-answer // the receiver is slow, but answers
			return http.StatusOK
		})
		release := sync.OnceFunc(func() { close(answer) })
		defer release() // if the test stops early
		b.register(t)
		_, err := b.log.Publish("once")
		require.NoError(t, err)
		<-arrived

		done := make(chan error)
		go func() { done <- b.api.Shutdown(context.Background()) }()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("shutdown cut a delivery in flight at once")
		default:
		}
		_, err = b.log.Publish("after the shutdown began")
		require.NoError(t, err)
		release()

		assert.NoError(t, <-done)
		<-b.tries
		assert.Empty(t, b.tries, "attempts started after the shutdown began")
	})
}

func TestShutdown_CutsADeliveryThatOutlastsTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		arrived, never := make(chan struct{}), make(chan struct{})
		b := newBubble(t, func(w http.ResponseWriter, r *http.Request) int {
			close(arrived)
			<-never
			return http.StatusOK
		})
		defer close(never)
		b.register(t)
		_, err := b.log.Publish("once")
		require.NoError(t, err)
		<-arrived
		start := time.Now()

		err = b.api.Shutdown(context.Background())

		assert.NoError(t, err, "a cut delivery is how shutdown is meant to end, not an error")
		assert.Equal(t, server.DefaultWebhookGrace, time.Since(start))
	})
}
