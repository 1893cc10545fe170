package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/02-long-polling/internal/testkit"
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
