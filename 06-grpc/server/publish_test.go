package server_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/server"
)

func TestPublish_AnswersRequestTimeoutWhenTheBodyStopsArriving(t *testing.T) {
	log, err := feed.New(8)
	require.NoError(t, err)
	srv := httptest.NewServer(server.New(log, server.WithBodyTimeout(50*time.Millisecond)))
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, conn.SetDeadline(time.Now().Add(testkit.WaitTimeout))) // a held request fails the test, not hangs it

	// The headers promise 100 bytes; 2 come, and then nothing.
	_, err = io.WriteString(conn, "POST /publish HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\nhi")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err, "an answer, not a request held until the connection drops")
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)

	assert.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
	assert.Equal(t, "request body not complete after 50ms: 2 bytes arrived\n", string(body), "a one-line reason")
	assert.True(t, resp.Close, "the connection ends: the rest of the body would be read as the next request")
	assert.Zero(t, log.Last(), "nothing was published")
}
