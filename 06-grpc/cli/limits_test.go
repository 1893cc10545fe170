package cli_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/cli"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
)

func TestServer_RefusesHeldRequestsPastMaxHeldButStillPublishes(t *testing.T) {
	_, url := startServer(t, "127.0.0.1:0", "-max-held", "1")
	client := &http.Client{Timeout: testkit.WaitTimeout} // a request held by mistake fails the test, not hangs it
	stream, err := client.Get(url + "/events")
	require.NoError(t, err)
	defer stream.Body.Close()
	require.Equal(t, http.StatusOK, stream.StatusCode, "the stream holds the only place")

	for _, path := range []string{"/events", "/updates?after=0&wait=60s"} {
		resp, err := client.Get(url + path)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, path)
		assert.Equal(t, "5", resp.Header.Get("Retry-After"), path)
		assert.True(t, resp.Close, "%s: the connection of a refused request is closed", path)
	}
	resp, err := client.Post(url+"/publish", "text/plain", strings.NewReader("still publishing"))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusCreated, resp.StatusCode)
	resp, err = client.Get(url + "/updates")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode, "a short poll is not held")
}

func TestServer_MaxHeldLeavesRoomForTheWebhooksConnections(t *testing.T) {
	// Each registration may hold a connection to its receiver. The default
	// cap on held requests is what the open-file limit leaves, so the
	// webhooks' connections come out of it: together they must not use up
	// the files the server needs to accept anything at all.
	require.Greater(t, server.DefaultMaxHeld(), 1, "this machine's open-file limit")
	_, url := startServer(t, "127.0.0.1:0", "-max-webhooks", strconv.Itoa(server.DefaultMaxHeld()-1))
	client := &http.Client{Timeout: testkit.WaitTimeout} // a request held by mistake fails the test, not hangs it
	stream, err := client.Get(url + "/events")
	require.NoError(t, err)
	defer stream.Body.Close()
	require.Equal(t, http.StatusOK, stream.StatusCode, "the stream holds the only place left")

	resp, err := client.Get(url + "/events")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)

	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Contains(t, string(body), "server busy: 1 requests are held open already")
}

// serverWriteBlocked reports whether a goroutine of the server package
// waits in a socket write: the kernel's buffers toward some client are full.
// Nothing outside the process can see that; the server runs in this one.
func serverWriteBlocked() bool {
	stacks := make([]byte, 4<<20)
	stacks = stacks[:runtime.Stack(stacks, true)]
	for _, g := range strings.Split(string(stacks), "\n\n") {
		if strings.Contains(g, "[IO wait") && strings.Contains(g, "internal/poll.(*FD).Write") &&
			strings.Contains(g, "realtime/06-grpc/server.") {
			return true
		}
	}
	return false
}

func TestServer_ShutsDownAtOnceWhenASubscriberStoppedReading(t *testing.T) {
	srv, url := startServer(t, "127.0.0.1:0")
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.(*net.TCPConn).SetReadBuffer(4<<10)) // so that the server's writes fill it sooner
	require.NoError(t, conn.SetDeadline(time.Now().Add(testkit.WaitTimeout)))
	_, err = io.WriteString(conn, "GET /events HTTP/1.1\r\nHost: localhost\r\n\r\n")
	require.NoError(t, err)
	head, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	require.Equal(t, "text/event-stream", head.Header.Get("Content-Type"))

	// From here the client reads nothing. Updates as large as they come
	// fill the kernel's buffers toward it until the server's write blocks.
	line := strings.Repeat("x", 64<<10) + "\n"
	require.Eventually(t, func() bool {
		_, err := io.WriteString(srv.stdin, strings.Repeat(line, 4))
		return err == nil && serverWriteBlocked()
	}, testkit.WaitTimeout, time.Millisecond, "the server's write to the subscriber never blocked")

	err = srv.stop(t)

	assert.NoError(t, err, "a stuck write does not hold the shutdown past its timeout")
	assert.Equal(t, 0, cli.ExitCode("server", err, io.Discard))
}
