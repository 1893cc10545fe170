package server_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"realtime/01-short-polling/internal/testkit"
)

// browserTimeout bounds every wait on the page: long enough for a cold
// Chromium start on a loaded CI machine.
const browserTimeout = 30 * time.Second

// newBrowser starts headless Chromium and returns a context for driving one
// tab. Without Chromium the test is skipped, except under CI=true, where a
// missing browser is a failure: CI must prove the page works.
func newBrowser(tb testing.TB) context.Context {
	tb.Helper()
	path := findChromium()
	if path == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatal("no Chromium found, and CI=true: install it (apt-get install -y chromium)")
		}
		tb.Skip("no Chromium found (chromium, chromium-browser or google-chrome on PATH); skipping the browser test")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(tb.TempDir()),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, browserTimeout)
	tb.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc() // waits for the browser process to exit
	})
	return ctx
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
