// Package client receives updates from the server with one of several
// strategies and prints each exactly once, in order.
//
// Every strategy implements Strategy and reports to a Session, which owns the
// cursor and the output: what to print, what is a duplicate, and what is a
// gap are decided once, here, for all of them.
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// A Strategy receives updates after the session's cursor and hands them to
// the session until ctx ends or the connection fails. It returns the failure;
// Run reconnects.
type Strategy interface {
	Receive(ctx context.Context, s *Session) error
}

// Config is what every strategy may need.
type Config struct {
	Server   *url.URL      // the server's base URL, such as http://127.0.0.1:8080
	HTTP     *http.Client  // nil means a client with no overall timeout
	Interval time.Duration // short polling: time between polls
	Wait     time.Duration // long polling: how long the server may hold a poll

	StreamIdle time.Duration // event streams and sockets: silence after which the connection is dead; 0 means 45s

	// Publish is what a WebSocket client publishes: each text received is
	// sent through the socket once it is connected, and its outcome is
	// printed on stderr. Nil publishes nothing; other strategies ignore it.
	Publish <-chan string

	// Listen is the address a webhook receiver listens on, such as
	// 127.0.0.1:9000, and registers for the server to POST to; empty means
	// a port of 127.0.0.1 that the system picks. The server must be able to
	// dial it: an address of every interface (:9000) is registered as the
	// unspecified address, which no sender dials: give Callback.
	Listen string

	// Callback is the URL a webhook receiver registers instead of
	// http://LISTEN/hook, when the server reaches it by another address
	// (a tunnel, a reverse proxy, NAT) that forwards to Listen. Any path
	// forwarded there is served.
	Callback string

	// CheckInterval is how often a webhook receiver asks the server about
	// its registration (GET /webhooks/{id}); 0 means 5s. Nothing else tells
	// it that the server restarted and forgot it: a quiet server and one
	// that forgot look the same from here.
	CheckInterval time.Duration

	// GRPC is the host:port of the server's gRPC listener, such as
	// 127.0.0.1:9090.
	GRPC string
}

// ErrUnknownStrategy is returned by NewStrategy for a name it does not know.
var ErrUnknownStrategy = errors.New("unknown strategy")

// Strategies lists the strategies this chapter's client speaks.
func Strategies() []string { return []string{"short", "long", "sse", "ws", "webhook", "grpc"} }

// NewStrategy returns the strategy called name.
func NewStrategy(name string, cfg Config) (Strategy, error) {
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{}
	}
	switch name {
	case "short":
		return &ShortPoll{cfg: cfg}, nil
	case "long":
		return &LongPoll{cfg: cfg}, nil
	case "sse":
		return &SSE{cfg: cfg}, nil
	case "ws":
		return &WS{cfg: cfg}, nil
	case "webhook":
		return &Webhook{cfg: cfg}, nil
	case "grpc":
		return &GRPC{cfg: cfg}, nil
	}
	return nil, fmt.Errorf("%w %q: choose one of %s", ErrUnknownStrategy, name, strings.Join(Strategies(), ", "))
}

// Backoff spaces reconnect attempts: the n-th consecutive failure waits
// between half and all of Base·2ⁿ, capped at Max. The jitter keeps a crowd
// of clients that lost the same server from returning in one herd.
type Backoff struct {
	Base, Max time.Duration
}

// DefaultBackoff retries quickly at first and at least every few seconds.
func DefaultBackoff() Backoff {
	return Backoff{Base: 100 * time.Millisecond, Max: 5 * time.Second}
}

// Delay returns how long to wait after the n-th consecutive failure (from 0).
func (b Backoff) Delay(n int) time.Duration {
	d := b.Max
	if n < 30 && b.Base<<n < b.Max {
		d = b.Base << n
	}
	return d/2 + rand.N(d/2+1)
}

// maxRetryAfter bounds what a server's Retry-After can make the client wait:
// past a minute, the user is better served by the client's own backoff.
const maxRetryAfter = time.Minute

// RetryAfterError is a refused request whose answer said when to come back:
// a 503 or 429 with Retry-After in seconds. Run waits at least that long.
type RetryAfterError struct {
	Err   error
	Delay time.Duration
}

func (e *RetryAfterError) Error() string { return e.Err.Error() }
func (e *RetryAfterError) Unwrap() error { return e.Err }

// refused describes an answer that is not the one asked for, with the start
// of its body; it keeps the Retry-After of a 503 or 429, so that a client of
// a busy server comes back when it was asked to and not before.
func refused(endpoint *url.URL, resp *http.Response) error {
	err := fmt.Errorf("%s %s: %s: %s", resp.Request.Method, endpoint, resp.Status, firstLine(resp.Body))
	if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
		return err
	}
	seconds, convErr := strconv.Atoi(resp.Header.Get("Retry-After"))
	if convErr != nil || seconds <= 0 {
		return err // absent, or an HTTP date: the backoff decides
	}
	return &RetryAfterError{Err: err, Delay: min(time.Duration(seconds)*time.Second, maxRetryAfter)}
}

// Run receives with strategy until ctx ends, reconnecting after each failure
// with backoff and resuming from the session's cursor. Failures are reported
// on stderr; Run returns nil when ctx ends.
func Run(ctx context.Context, strategy Strategy, s *Session, backoff Backoff, stderr io.Writer) error {
	failures := 0
	for {
		err := strategy.Receive(ctx, s)
		if ctx.Err() != nil {
			return nil
		}
		if s.takeAnswered() {
			failures = 0 // the server was reachable: this is a new outage
		}
		delay := backoff.Delay(failures)
		var busy *RetryAfterError
		if errors.As(err, &busy) && busy.Delay > delay {
			delay = busy.Delay // the server asked for at least this long
		}
		if hint, ok := retryHint(strategy); ok && hint > delay {
			delay = hint // the server asked for at least this long
		}
		failures++
		fmt.Fprintf(stderr, "%s: %v; retrying in %v\n", s.strategy, err, delay.Round(time.Millisecond))
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// retryHint returns the reconnection time a strategy's server asked for, if
// the strategy has one (an event stream's retry field).
func retryHint(strategy Strategy) (time.Duration, bool) {
	hinter, ok := strategy.(interface{ RetryDelay() (time.Duration, bool) })
	if !ok {
		return 0, false
	}
	return hinter.RetryDelay()
}
