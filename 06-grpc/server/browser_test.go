package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
	"realtime/06-grpc/server"
)

// browserTimeout bounds every wait on the page: long enough for a slow
// page on a loaded CI machine.
const browserTimeout = 60 * time.Second

// reboundName is a name that the browser resolves to 127.0.0.1, as a DNS
// name an attacker controls resolves after a DNS rebinding.
const reboundName = "rebound.test"

// browser is the one Chromium that the package's tests share, started by the
// first test that needs it: starting Chromium takes seconds, a browser
// context (a tab with cookies, storage and cache of its own) milliseconds.
// TestMain closes it once every test has run.
var browser sharedBrowser

// sharedBrowser starts Chromium once, and stops it.
type sharedBrowser struct {
	once sync.Once
	ctx  context.Context // the running browser's
	err  error           // why it did not start
	stop func()
}

// newBrowser returns a context for driving one tab of the shared headless
// Chromium, in a browser context of its own that ends with the test. Without
// Chromium the test is skipped, except under CI=true, where a missing browser
// is a failure: CI must prove the page works.
func newBrowser(tb testing.TB) context.Context {
	tb.Helper()
	path := findChromium()
	if path == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("no Chromium found, and CI=true: install it (apt-get install -y chromium)")
		}
		tb.Skip("no Chromium found (chromium, chromium-browser or google-chrome on PATH); skipping the browser test")
	}
	browserCtx, err := browser.start(path)
	require.NoError(tb, err, "start Chromium")
	ctx, cancelTab := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	ctx, cancelTimeout := context.WithTimeout(ctx, browserTimeout)
	tb.Cleanup(func() {
		cancelTimeout()
		cancelTab() // closes the tab and its browser context
	})
	return ctx
}

// start starts Chromium at path the first time it is called, and returns
// its context.
func (b *sharedBrowser) start(path string) (context.Context, error) {
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "chromium-")
		if err != nil {
			b.err = err
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path),
			chromedp.NoSandbox, // CI runs as root
			chromedp.DisableGPU,
			chromedp.Flag("disable-background-networking", true),
			chromedp.Flag("disable-component-update", true),
			chromedp.Flag("disable-sync", true),
			chromedp.Flag("host-resolver-rules", "MAP "+reboundName+" 127.0.0.1"),
			chromedp.UserDataDir(dir),
		)
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
		ctx, cancelBrowser := chromedp.NewContext(allocCtx)
		b.stop = func() {
			cancelBrowser()
			cancelAlloc() // waits for the browser process to exit
			os.RemoveAll(dir)
		}
		// The first Do starts the browser and binds its life to ctx, which
		// no test's timeout ends.
		b.ctx, b.err = ctx, chromedp.Do(ctx)
	})
	return b.ctx, b.err
}

// close stops the browser, if a test started it.
func (b *sharedBrowser) close() {
	if b.stop != nil {
		b.stop()
	}
}

// closingBrowser runs the tests, then closes the browser they shared, so
// that goleak, which looks once Run returns, finds none of its goroutines.
type closingBrowser struct{ m *testing.M }

func (c closingBrowser) Run() int {
	defer browser.close()
	return c.m.Run()
}

func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	return ""
}

// waitForText waits until the element at selector contains text.
func waitForText(selector, text string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](
		`document.querySelector(`+quote(selector)+`).innerText.includes(`+quote(text)+`)`,
		chromedp.WithPollingInterval(20*time.Millisecond))
}

func quote(s string) string {
	b, _ := json.Marshal(s) // a JavaScript string literal
	return string(b)
}

func TestPage_ShortPollingPaneShowsEachUpdate(t *testing.T) {
	srv, _ := start(t, 8)
	ctx := newBrowser(t)

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL)))
	testkit.Publish(t, srv.URL, "published by a script")
	require.NoError(t, chromedp.Do(ctx, waitForText("#short .updates", "1 published by a script")))

	// The page's own box publishes too.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys("#text", "typed in the browser"),
		chromedp.Click("#publish button"),
		waitForText("#published", "published #2"),
		waitForText("#short .updates", "2 typed in the browser"),
	))
}

func TestPage_LongPollingPaneShowsEachUpdateAsItIsPublished(t *testing.T) {
	srv, _ := start(t, 8)
	ctx := newBrowser(t)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.URL),
		waitForText("#long .state", "waiting"),
	))

	testkit.Publish(t, srv.URL, "first")
	testkit.Publish(t, srv.URL, "second")

	require.NoError(t, chromedp.Do(ctx,
		waitForText("#long .updates", "1 first"),
		waitForText("#long .updates", "2 second"),
	))
}

func TestPage_SSEPaneReceivesUpdatesAndResumesAfterTheServerDropsIt(t *testing.T) {
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	handler := server.New(log, server.WithRetry(100*time.Millisecond))
	streams := make(chan string, 8) // each stream's Last-Event-ID
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/events" {
			streams <- r.Header.Get("Last-Event-ID")
		}
		handler.ServeHTTP(w, r)
	}))
	tcp := testkit.TrackConns(srv)
	srv.Start()
	t.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(t, handler)
	ctx := newBrowser(t)

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL)))
	assert.Empty(t, testkit.Receive(t, streams, "the page to open its event stream"))
	publishAll(t, log, "first")
	require.NoError(t, chromedp.Do(ctx, waitForText("#sse .updates", "1 first")))

	tcp.CloseAll() // the server drops every connection
	publishAll(t, log, "while away")

	assert.Equal(t, "run-1-1", testkit.Receive(t, streams, "the browser to reconnect"), "EventSource resumes with Last-Event-ID, the whole cursor")
	publishAll(t, log, "after")
	require.NoError(t, chromedp.Do(ctx,
		waitForText("#sse .updates", "2 while away"),
		waitForText("#sse .updates", "3 after"),
	))
	count, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#sse .updates li").length`))
	require.NoError(t, err)
	assert.Equal(t, 3, count, "each update shown once")
}

// pageServer is a test server for the page that tells the test about each
// WebSocket the page opens and each POST /publish, and can drop every
// connection it has accepted.
type pageServer struct {
	*httptest.Server
	tcp *testkit.Conns
	// sockets carries the after parameter of each GET /ws a browser sends
	// (it says its Origin; a Go client does not), and holds the request
	// until the test has taken it: while the page waits for its socket, the
	// test can read what the page says and do what the page does.
	sockets chan string
	posts   atomic.Int64 // how many POST /publish came
	handler atomic.Pointer[server.Server]
}

// startPage starts the server on log for a page test.
func startPage(tb testing.TB, log *feed.Log) *pageServer {
	tb.Helper()
	done := make(chan struct{}) // the test has ended: hold no request
	srv := &pageServer{sockets: make(chan string)}
	srv.handler.Store(server.New(log))
	srv.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/publish" {
			srv.posts.Add(1)
		}
		if r.URL.Path == "/ws" && r.Header.Get("Origin") != "" {
			select {
			case srv.sockets <- r.URL.Query().Get("after"):
			case <-r.Context().Done():
				return
			case <-done:
				return
			}
		}
		srv.handler.Load().ServeHTTP(w, r)
	}))
	srv.tcp = testkit.TrackConns(srv.Server)
	srv.Start()
	tb.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(tb, srv)
	tb.Cleanup(func() { close(done) }) // first: cleanups run last in, first out
	return srv
}

// Shutdown shuts down the server the page talks to now.
func (srv *pageServer) Shutdown(ctx context.Context) error {
	return srv.handler.Load().Shutdown(ctx)
}

// restart shuts the server down, as a deploy does, and serves log from then
// on, as the server that replaces it: at the same address, with no history
// of the old one.
func (srv *pageServer) restart(tb testing.TB, log *feed.Log) {
	tb.Helper()
	old := srv.handler.Swap(server.New(log))
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	defer cancel()
	require.NoError(tb, old.Shutdown(ctx))
}

func TestPage_WebSocketPaneShowsEachUpdate(t *testing.T) {
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	srv := startPage(t, log)
	ctx := newBrowser(t)

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL)))
	assert.Equal(t, "0", testkit.Receive(t, srv.sockets, "the page to open its WebSocket"), "a first socket starts at the beginning")
	require.NoError(t, chromedp.Do(ctx, waitForText("#ws .state", "open, cursor run-1-0")))
	testkit.Publish(t, srv.URL, "published by a script")
	require.NoError(t, chromedp.Do(ctx,
		waitForText("#ws .updates", "1 published by a script"),
		waitForText("#ws .state", "open, cursor run-1-1"),
	))
}

func TestPage_PublishesThroughTheWebSocketWhenItIsOpenAndWithPOSTWhenNot(t *testing.T) {
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	srv := startPage(t, log)
	ctx := newBrowser(t)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL)))

	// The page's socket is held before the upgrade: the box posts.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys("#text", "before the socket"),
		chromedp.Click("#publish button"),
		waitForText("#published", "published #1"),
	))
	assert.Equal(t, int64(1), srv.posts.Load(), "POST /publish while the socket is not open")

	testkit.Receive(t, srv.sockets, "the page to open its WebSocket")
	require.NoError(t, chromedp.Do(ctx, waitForText("#ws .state", "open, cursor run-1-1")))
	other := dialWS(t, srv.Server, "?after=run-1-1", nil) // a Go client beside the page
	assert.JSONEq(t, `{"type":"hello","last":1,"epoch":"run-1"}`, nextMessage(t, other))

	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys("#text", "through the socket"),
		chromedp.Click("#publish button"),
		waitForText("#published", "published #2"),
		waitForText("#ws .updates", "2 through the socket"),
		waitForText("#sse .updates", "2 through the socket"),
		waitForText("#long .updates", "2 through the socket"),
	))
	assert.Equal(t, int64(1), srv.posts.Load(), "POST /publish while the socket is open")
	var u feed.Update
	require.NoError(t, json.Unmarshal([]byte(nextMessage(t, other)), &u), "the update the Go client got")
	assert.Equal(t, feed.Update{ID: 2, Data: "through the socket", Time: u.Time}, u)

	// A refusal comes back on the socket too, with the server's reason.
	require.NoError(t, chromedp.Do(ctx,
		chromedp.SendKeys("#text", "   "),
		chromedp.Click("#publish button"),
		waitForText("#published", "update text is empty or only white space"),
	))
	assert.Equal(t, int64(1), srv.posts.Load(), "POST /publish of a refused text while the socket is open")
	assert.Equal(t, uint64(2), log.Last())
}

func TestPage_WebSocketPaneResumesAfterTheServerDropsIt(t *testing.T) {
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	srv := startPage(t, log)
	ctx := newBrowser(t)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL)))
	testkit.Receive(t, srv.sockets, "the page to open its WebSocket")
	publishAll(t, log, "first")
	require.NoError(t, chromedp.Do(ctx, waitForText("#ws .updates", "1 first")))

	srv.tcp.CloseAll() // the server drops every connection, with no close frame
	require.NoError(t, chromedp.Do(ctx, waitForText("#ws .state", "closed 1006; reconnecting")),
		"the pane says why it is not open while its next socket is held")
	publishAll(t, log, "while away")

	assert.Equal(t, "run-1-1", testkit.Receive(t, srv.sockets, "the page to reconnect"), "the page resumes after its whole cursor")
	publishAll(t, log, "after")
	require.NoError(t, chromedp.Do(ctx,
		waitForText("#ws .updates", "2 while away"),
		waitForText("#ws .updates", "3 after"),
		waitForText("#ws .state", "open, cursor run-1-3"),
	))
	count, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#ws .updates li").length`))
	require.NoError(t, err)
	assert.Equal(t, 3, count, "each update shown once")
}

func TestPage_WebSocketPaneShowsAGapWhenTheServerRestarted(t *testing.T) {
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	srv := startPage(t, log)
	ctx := newBrowser(t)
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL)))
	testkit.Receive(t, srv.sockets, "the page to open its WebSocket")
	publishAll(t, log, "first")
	require.NoError(t, chromedp.Do(ctx, waitForText("#ws .updates", "1 first")))

	restarted, err := feed.New(8, feed.WithEpoch("run-2"))
	require.NoError(t, err)
	publishAll(t, restarted, "not the page's 1", "not the page's 2")
	srv.restart(t, restarted)
	require.NoError(t, chromedp.Do(ctx, waitForText("#ws .state", "closed 1001 server shutting down; reconnecting")),
		"the pane says why the server closed it")

	assert.Equal(t, "run-1-1", testkit.Receive(t, srv.sockets, "the page to reconnect"))
	require.NoError(t, chromedp.Do(ctx, waitForText("#ws .updates", "gap: server cannot resume after 1; continuing from 2")),
		"the pane shows the gap")
	publishAll(t, restarted, "after the restart")
	require.NoError(t, chromedp.Do(ctx,
		waitForText("#ws .updates", "3 after the restart"),
		waitForText("#ws .state", "open, cursor run-2-3"),
	))
	count, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#ws .updates li").length`))
	require.NoError(t, err)
	assert.Equal(t, 3, count, "the first update, the gap, and the update after the restart")
}

// webhookRow is a JavaScript expression for the Webhooks pane's row of the
// registration to url, undefined while the pane shows none.
func webhookRow(url string) string {
	return `Array.from(document.querySelectorAll("#webhooks .hooks li")).find((row) => row.querySelector(".url")?.textContent === ` + quote(url) + `)`
}

// waitForWebhook waits until the Webhooks pane shows the registration to url
// with text in its row.
func waitForWebhook(url, text string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](`(`+webhookRow(url)+`)?.innerText.includes(`+quote(text)+`)`,
		chromedp.WithPollingInterval(20*time.Millisecond))
}

// waitForNoWebhook waits until the Webhooks pane shows no registration to url.
func waitForNoWebhook(url string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](`!(`+webhookRow(url)+`)`, chromedp.WithPollingInterval(20*time.Millisecond))
}

func TestPage_WebhooksPaneShowsEachRegistrationAndItsDeliveriesLive(t *testing.T) {
	srv, _ := start(t, 8)
	first, second := newReceiver(t, nil), newReceiver(t, nil)
	firstURL, secondURL := first.URL+"/hook", second.URL+"/hook"
	regFirst := register(t, srv, firstURL, `0`)
	register(t, srv, secondURL, `0`)
	ctx := newBrowser(t)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.URL),
		waitForText("#webhooks .why", "A browser cannot receive webhooks"),
		waitForWebhook(firstURL, "delivered 0, cursor run-1-0"),
		waitForWebhook(secondURL, "delivered 0, cursor run-1-0"),
	), "the pane shows both registrations")
	urls, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("#webhooks .hooks .url"), (url) => url.textContent)`))
	require.NoError(t, err)
	assert.Equal(t, []string{firstURL, secondURL}, urls, "in the order they were registered")

	testkit.Publish(t, srv.URL, "first")
	require.NoError(t, chromedp.Do(ctx,
		waitForWebhook(firstURL, "delivered 1, cursor run-1-1"),
		waitForWebhook(secondURL, "delivered 1, cursor run-1-1"),
	), "the pane shows the first delivery")
	testkit.Publish(t, srv.URL, "second")
	testkit.Publish(t, srv.URL, "third")
	require.NoError(t, chromedp.Do(ctx, waitForWebhook(firstURL, "delivered 3, cursor run-1-3")), "the pane shows the count going up")

	resp, _ := get(t, srv, http.MethodDelete, "/webhooks/"+regFirst.ID, nil)
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	require.NoError(t, chromedp.Do(ctx,
		waitForNoWebhook(firstURL),
		waitForWebhook(secondURL, "delivered 3, cursor run-1-3"),
	), "the deleted registration is gone, the other one stays")
}

func TestPage_WebhooksPaneShowsWhyDeliveriesFail(t *testing.T) {
	srv, _ := start(t, 8)
	// Retry-After holds the next attempt ten minutes away: the pane shows
	// one failure, not a count that goes up under the test's feet.
	busy := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) int {
		w.Header().Set("Retry-After", "600")
		return http.StatusServiceUnavailable
	})
	gone := newReceiver(t, func(http.ResponseWriter, *http.Request) int { return http.StatusGone })
	busyURL, goneURL := busy.URL+"/hook", gone.URL+"/hook"
	register(t, srv, busyURL, `0`)
	register(t, srv, goneURL, `0`)
	testkit.Publish(t, srv.URL, "first")
	ctx := newBrowser(t)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.URL),
		waitForWebhook(busyURL, "failures 1, next attempt at "),
		waitForWebhook(busyURL, "last error: receiver answered 503 Service Unavailable"),
		waitForWebhook(busyURL, "delivered 0, cursor run-1-0"),
	), "the pane shows the failure, and when the server tries again")
	require.NoError(t, chromedp.Do(ctx,
		waitForWebhook(goneURL, "disabled: receiver answered 410 Gone: it wants no more deliveries"),
		waitForWebhook(goneURL, "failures 1"),
	), "the pane shows that the registration is disabled, and why")
	disabled, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(`+webhookRow(goneURL)+`).classList.contains("disabled")`))
	require.NoError(t, err)
	assert.True(t, disabled, "the row is marked disabled")
	text, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(`+webhookRow(goneURL)+`).innerText`))
	require.NoError(t, err)
	assert.NotContains(t, text, "next attempt", "a disabled registration has none")
}

func TestPage_WebhooksPaneShowsARegisteredURLAsText(t *testing.T) {
	srv, _ := start(t, 8)
	// Whoever registers writes the URL, and every page that opens the pane shows it.
	url := "http://127.0.0.1:9/hook?<img/id=injected/src=x>" // "/" separates attributes as a space would
	register(t, srv, url, `0`)
	ctx := newBrowser(t)

	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL), waitForWebhook(url, url)), "the pane shows the URL as it was written")
	injected, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("injected") !== null`))
	require.NoError(t, err)
	assert.False(t, injected, "the URL became an element of the page")
}

// grpcRow is a JavaScript expression for the gRPC pane's row of the stream
// from peer, undefined while the pane shows none.
func grpcRow(peer string) string {
	return `Array.from(document.querySelectorAll("#grpc .streams li")).find((row) => row.querySelector(".peer")?.textContent === ` + quote(peer) + `)`
}

// waitForGRPCStream waits until the gRPC pane shows the stream from peer
// with text in its row.
func waitForGRPCStream(peer, text string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](`(`+grpcRow(peer)+`)?.innerText.includes(`+quote(text)+`)`,
		chromedp.WithPollingInterval(20*time.Millisecond))
}

// waitForNoGRPCStream waits until the gRPC pane shows no stream from peer.
func waitForNoGRPCStream(peer string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](`!(`+grpcRow(peer)+`)`, chromedp.WithPollingInterval(20*time.Millisecond))
}

func TestPage_GRPCPaneShowsEachOpenSubscribeStreamLive(t *testing.T) {
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	rpc, addr := startGRPC(t, log)
	api := server.New(log, server.WithGRPCSubscribers(grpcSubscribers(rpc)))
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(t, api)
	ctx := newBrowser(t)
	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(srv.URL),
		waitForText("#grpc .why", "A browser cannot be a gRPC client"),
		waitForText("#grpc .state", "0 open"),
	), "the pane says why it shows the server's side, and that there is no stream yet")

	local := make(chan string, 1)
	client := dialGRPC(t, addr, local)
	streamCtx, endStream := context.WithTimeout(t.Context(), testkit.WaitTimeout)
	defer endStream()
	stream, err := client.Subscribe(streamCtx, &realtimev1.SubscribeRequest{})
	require.NoError(t, err)
	_, err = stream.Header()
	require.NoError(t, err, "the stream is open: the server sent its epoch")
	peer := testkit.Receive(t, local, "the client's connection")
	require.NoError(t, chromedp.Do(ctx,
		waitForGRPCStream(peer, "cursor run-1-0"),
		waitForText("#grpc .state", "1 open"),
	), "the pane shows the stream, by its peer address")

	testkit.Publish(t, srv.URL, "first")
	_, err = stream.Recv()
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(ctx, waitForGRPCStream(peer, "cursor run-1-1")), "the pane shows the cursor going up")

	endStream()
	require.NoError(t, chromedp.Do(ctx, waitForNoGRPCStream(peer), waitForText("#grpc .state", "0 open")),
		"the ended stream is gone")
}

// attackPage is a page on another site that tries to publish to the server
// at %s (a JavaScript string) the two ways a page can without asking CORS:
// a no-cors fetch, and a form, whose text/plain body needs no preflight.
const attackPage = `<!doctype html>
<title>another site</title>
<form id="attack" method="post" enctype="text/plain"><input name="data" value="from another site"><button>send</button></form>
<p id="state">starting</p>
<script>
const victim = %[1]s;
const state = document.getElementById("state");
document.getElementById("attack").action = victim + "/publish";
fetch(victim + "/publish", { method: "POST", mode: "no-cors", body: "from another site" })
  .then(() => { state.textContent = "fetch answered"; }, (err) => { state.textContent = "fetch failed: " + err; });
</script>`

func TestPage_AnotherSiteCannotPublishThroughTheBrowser(t *testing.T) {
	srv, log := start(t, 8)
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, attackPage, quote(srv.URL))
	}))
	t.Cleanup(attacker.Close)
	// localhost and 127.0.0.1 are two sites to the browser, as two domains
	// on the web are.
	attackerURL := strings.Replace(attacker.URL, "127.0.0.1", "localhost", 1)
	ctx := newBrowser(t)

	// The page can never read the answer of a no-cors fetch, but it learns
	// when it came: by then the server has handled the request.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(attackerURL), waitForText("#state", "fetch answered")))
	assert.Zero(t, log.Last(), "the no-cors fetch published")

	// The form navigates the tab to the server's answer.
	resp, err := chromedp.RunResponse(ctx, chromedp.Click("#attack button"))
	require.NoError(t, err)
	body, err := chromedp.Run(ctx, chromedp.Text("body"))
	require.NoError(t, err)
	assert.Equal(t, int64(http.StatusForbidden), resp.Status)
	assert.Equal(t, "refused POST /publish: cross-origin request detected from Sec-Fetch-Site header; only this server's own pages may write to it", strings.TrimSpace(body))
	assert.Zero(t, log.Last(), "the form published")
}

// socketAttackPage is a page on another site that opens a WebSocket to the
// server at %s (a JavaScript string) and publishes through it: a browser
// lets any page open a socket to any server, and only says the page's
// Origin in the handshake.
const socketAttackPage = `<!doctype html>
<title>another site</title>
<p id="state">starting</p>
<script>
const state = document.getElementById("state");
const socket = new WebSocket(%[1]s.replace(/^http/, "ws") + "/ws");
socket.onopen = () => { socket.send(JSON.stringify({ data: "from another site" })); };
socket.onmessage = (event) => { state.textContent += " " + event.data; };
socket.onclose = (event) => { state.textContent = "closed " + event.code; };
</script>`

// statusRecorder remembers the status of an answer, 101 for a handshake
// that took the connection over.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *statusRecorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	r.status = http.StatusSwitchingProtocols
	return http.NewResponseController(r.ResponseWriter).Hijack()
}

func TestPage_AnotherSiteCannotOpenAWebSocketThatPublishes(t *testing.T) {
	for _, tc := range []struct {
		name      string
		allow     bool // start the server with -allow-origin and the page's origin
		status    int
		state     string
		published uint64
	}{
		{"a page of another origin is refused before the upgrade", false, http.StatusForbidden, "closed 1006", 0},
		{"the same page publishes once -allow-origin names its origin", true, http.StatusSwitchingProtocols, `"published"`, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var victim string // the server's URL, set before ready is closed
			ready := make(chan struct{})
			attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				<-ready
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				fmt.Fprintf(w, socketAttackPage, quote(victim))
			}))
			t.Cleanup(attacker.Close)
			// localhost and 127.0.0.1 are two sites to the browser.
			attackerURL := strings.Replace(attacker.URL, "127.0.0.1", "localhost", 1)
			var opts []server.Option
			if tc.allow {
				opts = append(opts, server.WithAllowedOrigins(attackerURL))
			}
			log, err := feed.New(8, feed.WithEpoch("run-1"))
			require.NoError(t, err)
			handler := server.New(log, opts...)
			handshakes := make(chan int, 1) // the status of each GET /ws
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/ws" {
					handler.ServeHTTP(w, r)
					return
				}
				answer := &statusRecorder{ResponseWriter: w}
				handler.ServeHTTP(answer, r)
				handshakes <- answer.status
			}))
			t.Cleanup(srv.Close)
			testkit.ShutdownAtCleanup(t, handler)
			victim = srv.URL
			close(ready)
			ctx := newBrowser(t)

			require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(attackerURL)))
			assert.Equal(t, tc.status, testkit.Receive(t, handshakes, "the page's handshake"))
			require.NoError(t, chromedp.Do(ctx, waitForText("#state", tc.state)))
			assert.Equal(t, tc.published, log.Last(), "updates the page of another origin published")
		})
	}
}

func TestPage_IsNotServedUnderANameReboundToThisMachine(t *testing.T) {
	srv, _ := start(t, 8)
	rebound := strings.Replace(srv.URL, "127.0.0.1", reboundName, 1)
	ctx := newBrowser(t)

	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(rebound))
	require.NoError(t, err)
	body, err := chromedp.Run(ctx, chromedp.Text("body"))
	require.NoError(t, err)

	assert.Equal(t, int64(http.StatusMisdirectedRequest), resp.Status)
	assert.Contains(t, body, `refused: Host "`+strings.TrimPrefix(rebound, "http://")+`" is not a name of this server`)
}
