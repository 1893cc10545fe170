package server_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/natsfeed"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
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

func TestPublish_AnswersServiceUnavailableWhileTheSharedLogCannotBeReached(t *testing.T) {
	ns := startNATS(t)
	log, _ := openNATSLog(t, ns, natsfeed.Config{History: 8, Timeout: 100 * time.Millisecond})
	srv, _ := startOn(t, log)
	_, addr := startGRPC(t, log)
	ns.Shutdown()

	resp, body := get(t, srv, http.MethodPost, "/publish", strings.NewReader("lost?"))
	_, err := dialGRPC(t, addr, nil).Publish(t.Context(), &realtimev1.PublishRequest{Data: "lost?"})

	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "worth sending again, unlike a 400")
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Contains(t, body, "the log cannot be reached")
	assert.Equal(t, codes.Unavailable, status.Code(err), "%v", err)
}
