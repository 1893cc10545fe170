package server_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
	"realtime/06-grpc/server"
)

// BenchmarkPublishRoundTrip measures what a client waits to learn that its
// update is published: a {"data":...} message on an open WebSocket until its
// {"type":"published"} outcome arrives on the same socket, against a POST
// /publish on a kept-alive connection until its 201. One publish at a time,
// back to back, on loopback. The socket also receives the update itself (its
// sender is a subscriber too); the POST's client receives nothing else.
// A gRPC Publish is a unary call on an open HTTP/2 connection until its
// answer (the Update), as a service would publish.
//
//	go test -run '^$' -bench PublishRoundTrip -benchtime 2000x ./server/
func BenchmarkPublishRoundTrip(b *testing.B) {
	b.Run("transport=ws", func(b *testing.B) {
		srv := startBenchServer(b)
		conn, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http")+"/ws", nil)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		benchmarkRoundTrips(b, func(text string) error {
			if err := conn.WriteJSON(map[string]string{"data": text}); err != nil {
				return err
			}
			for {
				var message struct {
					Type string `json:"type"`
				}
				if err := conn.ReadJSON(&message); err != nil {
					return err
				}
				if message.Type == "published" {
					return nil
				}
			}
		})
	})
	b.Run("transport=post", func(b *testing.B) {
		srv := startBenchServer(b)
		hc := srv.Client() // keeps its connection alive between requests
		benchmarkRoundTrips(b, func(text string) error {
			resp, err := hc.Post(srv.URL+"/publish", "text/plain", strings.NewReader(text))
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				return &statusError{resp.Status}
			}
			return nil
		})
	})
	b.Run("transport=grpc", func(b *testing.B) {
		log, err := feed.New(feed.DefaultHistory)
		if err != nil {
			b.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		rpc := grpcserver.New(log)
		go func() { _ = rpc.Serve(lis) }()
		testkit.ShutdownAtCleanup(b, rpc)
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials())) // loopback only
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		updates := realtimev1.NewUpdatesClient(conn)
		// grpc.NewClient connects on the first call: make it before the
		// clock starts, as the socket's handshake is.
		if _, err := updates.Publish(b.Context(), &realtimev1.PublishRequest{Data: "connect"}); err != nil {
			b.Fatal(err)
		}
		benchmarkRoundTrips(b, func(text string) error {
			_, err := updates.Publish(b.Context(), &realtimev1.PublishRequest{Data: text})
			return err
		})
	})
}

type statusError struct{ status string }

func (e *statusError) Error() string { return "publish: " + e.status }

func startBenchServer(b *testing.B) *httptest.Server {
	b.Helper()
	log, err := feed.New(feed.DefaultHistory)
	if err != nil {
		b.Fatal(err)
	}
	api := server.New(log)
	srv := httptest.NewServer(api)
	b.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(b, api)
	return srv
}

// benchmarkRoundTrips runs publish b.N times and reports the percentiles of
// its durations.
func benchmarkRoundTrips(b *testing.B, publish func(text string) error) {
	latencies := make([]time.Duration, 0, b.N)
	for i := 0; b.Loop(); i++ {
		start := time.Now()
		if err := publish("update " + strconv.Itoa(i)); err != nil {
			b.Fatal(err)
		}
		latencies = append(latencies, time.Since(start))
	}
	slices.Sort(latencies)
	percentile := func(p float64) float64 {
		return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds()) / 1000
	}
	b.ReportMetric(percentile(0.50), "p50-ms")
	b.ReportMetric(percentile(0.99), "p99-ms")
}
