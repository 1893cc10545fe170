package server_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
)

// send makes one request to srv with the given headers and returns the
// response with its body read. A "Host" entry replaces the Host that the URL
// implies, as a browser does for a name that resolves to this server.
func send(tb testing.TB, srv *httptest.Server, method, path, body string, header map[string]string) (*http.Response, string) {
	tb.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	require.NoError(tb, err)
	for name, value := range header {
		if name == "Host" {
			req.Host = value
			continue
		}
		req.Header.Set(name, value)
	}
	resp, err := srv.Client().Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return resp, string(text)
}

// startWith runs the real handler, built with opts, on a real listener.
func startWith(tb testing.TB, opts ...server.Option) (*httptest.Server, *feed.Log) {
	tb.Helper()
	log, err := feed.New(8, feed.WithEpoch("run-1"))
	require.NoError(tb, err)
	srv := httptest.NewServer(server.New(log, opts...))
	tb.Cleanup(srv.Close)
	return srv, log
}

func TestGuard_RefusesWritesFromAnotherOriginAndPublishesNothing(t *testing.T) {
	srv, log := start(t, 8)
	tests := []struct {
		name   string
		method string
		header map[string]string
	}{
		{"a page on another site, as a current browser says it", http.MethodPost,
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://attacker.example"}},
		{"a page on the same site but another port", http.MethodPost,
			map[string]string{"Sec-Fetch-Site": "same-site", "Origin": "http://localhost:1"}},
		{"an older browser that sends only a foreign Origin", http.MethodPost,
			map[string]string{"Origin": "http://attacker.example"}},
		{"an Origin on the server's own address but another port", http.MethodPost,
			map[string]string{"Origin": "http://127.0.0.1:1"}},
		{"a PUT from another site, like every unsafe method", http.MethodPut,
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "http://attacker.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := send(t, srv, tt.method, "/publish", "x", tt.header)

			assert.Equal(t, http.StatusForbidden, resp.StatusCode)
			assert.Regexp(t, `^refused `+tt.method+` /publish: cross-origin request detected[^\n]*; only this server's own pages may write to it\n$`, body, "a one-line reason")
		})
	}
	assert.Zero(t, log.Last(), "nothing was published")
}

func TestGuard_LetsSameOriginPagesAndOtherClientsWrite(t *testing.T) {
	srv, log := start(t, 8)
	localhost := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	tests := []struct {
		name   string
		header map[string]string
	}{
		{"the server's own page, as a current browser says it", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": srv.URL}},
		{"the server's own page in an older browser: Origin equals the server's", map[string]string{"Origin": srv.URL}},
		{"the page opened as localhost", map[string]string{"Host": strings.TrimPrefix(localhost, "http://"), "Sec-Fetch-Site": "same-origin", "Origin": localhost}},
		{"curl or a script: neither Origin nor Sec-Fetch-Site", nil},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := send(t, srv, http.MethodPost, "/publish", "x", tt.header)

			assert.Equal(t, http.StatusCreated, resp.StatusCode, body)
			assert.Equal(t, uint64(i+1), log.Last())
		})
	}
}

func TestGuard_RefusesAHostThatIsNotTheServersOwn(t *testing.T) {
	srv, log := start(t, 8)
	tests := []struct {
		name, host, bare string
	}{
		{"a rebound DNS name with a port", "attacker.example:8080", "attacker.example"},
		{"a rebound DNS name without a port", "attacker.example", "attacker.example"},
		{"a public name that resolves to loopback", "127.0.0.1.nip.io:8080", "127.0.0.1.nip.io"},
		{"a name that only starts like localhost", "localhost.attacker.example", "localhost.attacker.example"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := `refused: Host "` + tt.host + `" is not a name of this server (a guard against DNS rebinding); ` +
				`start the server with -allow-host ` + tt.bare + ` to serve it` + "\n"
			for _, req := range []struct{ method, path string }{{http.MethodGet, "/updates"}, {http.MethodGet, "/"}, {http.MethodPost, "/publish"}} {
				// The rebound page is same-origin with the name, so the
				// browser says so: only the Host shows the trick.
				resp, body := send(t, srv, req.method, req.path, "x", map[string]string{"Host": tt.host, "Sec-Fetch-Site": "same-origin"})

				assert.Equal(t, http.StatusMisdirectedRequest, resp.StatusCode, req.path)
				assert.Equal(t, want, body, req.path)
			}
		})
	}
	assert.Zero(t, log.Last(), "nothing was published")
}

func TestGuard_ServesLoopbackNamesOnAnyPort(t *testing.T) {
	srv, _ := start(t, 8)
	for _, host := range []string{"localhost", "localhost:8080", "LocalHost:1", "127.0.0.1", "127.0.0.1:65535", "127.1.2.3:80", "[::1]:8080", "[::1]"} {
		t.Run(host, func(t *testing.T) {
			resp, body := send(t, srv, http.MethodGet, "/updates", "", map[string]string{"Host": host})

			assert.Equal(t, http.StatusOK, resp.StatusCode, body)
		})
	}
}

func TestGuard_ServesTheHostsItIsToldToAllow(t *testing.T) {
	srv, _ := startWith(t, server.WithAllowedHosts("updates.example", "192.0.2.10", "[2001:db8::1]"))
	tests := []struct {
		host   string
		status int
	}{
		{"updates.example:8443", http.StatusOK},
		{"UPDATES.example", http.StatusOK},
		{"192.0.2.10:8080", http.StatusOK},
		{"[2001:db8::1]:8080", http.StatusOK},
		{"localhost:1", http.StatusOK},
		{"other.example", http.StatusMisdirectedRequest},
		{"sub.updates.example", http.StatusMisdirectedRequest},
		{"192.0.2.11", http.StatusMisdirectedRequest},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			resp, body := send(t, srv, http.MethodGet, "/updates", "", map[string]string{"Host": tt.host})

			assert.Equal(t, tt.status, resp.StatusCode, body)
		})
	}
}

func TestGuard_EveryAnswerSaysNosniff(t *testing.T) {
	srv, _ := start(t, 8)
	tests := []struct {
		name         string
		method, path string
		header       map[string]string
		status       int
	}{
		{"a poll", http.MethodGet, "/updates", nil, http.StatusOK},
		{"the page", http.MethodGet, "/", nil, http.StatusOK},
		{"a script of the page", http.MethodGet, "/page/page.js", nil, http.StatusOK},
		{"a publish", http.MethodPost, "/publish", nil, http.StatusCreated},
		{"a malformed cursor", http.MethodGet, "/updates?after=x", nil, http.StatusBadRequest},
		{"an unknown path", http.MethodGet, "/no-such-file", nil, http.StatusNotFound},
		{"a wrong method", http.MethodDelete, "/updates", nil, http.StatusMethodNotAllowed},
		{"a write from another site", http.MethodPost, "/publish", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"a foreign Host", http.MethodGet, "/updates", map[string]string{"Host": "attacker.example"}, http.StatusMisdirectedRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, _ := send(t, srv, tt.method, tt.path, "x", tt.header)

			require.Equal(t, tt.status, resp.StatusCode)
			assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
		})
	}
}

func TestPage_ForbidsFramingAndEverythingNotItsOwn(t *testing.T) {
	srv, _ := start(t, 8)

	resp, _ := send(t, srv, http.MethodGet, "/", "", nil)

	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t,
		"default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
		resp.Header.Get("Content-Security-Policy"))
}

func TestGuard_EventStreamsSayNosniffHijackedOrNot(t *testing.T) {
	t.Run("over HTTP/1.1, where the handler hijacks the connection and writes the head itself", func(t *testing.T) {
		srv, _ := start(t, 8)

		resp, stream := openStream(t, srv, "", nil)
		skipHello(t, stream)

		require.True(t, resp.Close, "the stream was hijacked: its head says Connection: close")
		assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	})
	t.Run("over HTTP/2, where the stream stays in the handler", func(t *testing.T) {
		log, err := feed.New(8, feed.WithEpoch("run-1"))
		require.NoError(t, err)
		api := server.New(log)
		srv := httptest.NewUnstartedServer(api)
		srv.EnableHTTP2 = true
		srv.StartTLS()
		t.Cleanup(srv.Close)
		testkit.ShutdownAtCleanup(t, api)
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel) // before srv.Close: the stream ends when its client leaves
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
		require.NoError(t, err)

		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()

		require.Equal(t, 2, resp.ProtoMajor)
		assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	})
}
