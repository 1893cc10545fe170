package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/server"
)

// serve runs one request through handler and returns its answer.
func serve(handler http.Handler, method, target, body string) *httptest.ResponseRecorder {
	answer := httptest.NewRecorder()
	handler.ServeHTTP(answer, httptest.NewRequest(method, "http://localhost"+target, strings.NewReader(body)))
	return answer
}

func TestLongPoll_AnswersServiceUnavailableBeyondTheHeldCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		log, err := feed.New(8)
		require.NoError(t, err)
		handler := server.New(log, server.WithMaxHeld(1))
		held := httptest.NewRecorder()
		answered := make(chan struct{})
		go func() {
			defer close(answered)
			handler.ServeHTTP(held, httptest.NewRequest(http.MethodGet, "http://localhost/updates?after=0&wait=60s", nil))
		}()
		synctest.Wait() // the first poll is held, in the only place there is

		refused := serve(handler, http.MethodGet, "/updates?after=0&wait=60s", "")

		assert.Equal(t, http.StatusServiceUnavailable, refused.Code, "refused at once, not held")
		assert.Equal(t, "5", refused.Header().Get("Retry-After"))
		assert.Equal(t, "close", refused.Header().Get("Connection"), "a refused client's connection is not kept alive, holding a descriptor, until it retries")
		assert.Equal(t, "server busy: 1 requests are held open already; retry in 5s\n", refused.Body.String(), "a one-line reason")
		assert.Equal(t, http.StatusOK, serve(handler, http.MethodGet, "/updates?after=0", "").Code, "short polls still work")
		assert.Equal(t, http.StatusCreated, serve(handler, http.MethodPost, "/publish", "still publishing").Code, "publishing still works")

		<-answered // by that publish
		assert.Equal(t, http.StatusOK, held.Code)
		assert.Equal(t, http.StatusNoContent, serve(handler, http.MethodGet, "/updates?after=1&wait=1s", "").Code,
			"an answered poll gives its place back: the next one is held until its wait ends")
	})
}
