package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/server"
)

// deliveryWriter is the ResponseWriter of one benchmarked stream. It stands
// in for the network so that the benchmark counts what the stream allocates,
// not what a socket and net/http do. The first write is the hello, sent once
// the stream has subscribed; each write after it is one update delivered.
type deliveryWriter struct {
	header           http.Header
	hello            bool
	ready, delivered chan<- struct{}
}

func (w *deliveryWriter) Header() http.Header { return w.header }
func (w *deliveryWriter) WriteHeader(int)     {}
func (w *deliveryWriter) Flush()              {}

// SetWriteDeadline is there because a real connection has one: without it,
// ResponseController allocates an error to say so, on every write.
func (w *deliveryWriter) SetWriteDeadline(time.Time) error { return nil }

func (w *deliveryWriter) Write(p []byte) (int, error) {
	if !w.hello {
		w.hello = true
		w.ready <- struct{}{}
	} else {
		w.delivered <- struct{}{}
	}
	return len(p), nil
}

// BenchmarkSSE_DeliverOneUpdate publishes one update per iteration to
// a number of event streams and waits until every one has written it.
// allocs/delivery is what one subscriber allocates for one update, the
// publish itself not counted: the log encodes each update once, for all.
//
//	go test ./server -run '^$' -bench SSE_Deliver -benchmem
func BenchmarkSSE_DeliverOneUpdate(b *testing.B) {
	const text = "driver at 51.5074,-0.1278"
	for _, subscribers := range []int{1, 100, 1000} {
		b.Run(fmt.Sprint(subscribers, "-subscribers"), func(b *testing.B) {
			log, err := feed.New(feed.DefaultHistory)
			if err != nil {
				b.Fatal(err)
			}
			handler := server.New(log)
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan struct{}, subscribers)
			delivered := make(chan struct{}, subscribers)
			var streams sync.WaitGroup
			defer streams.Wait()
			defer cancel()
			for range subscribers {
				w := &deliveryWriter{header: make(http.Header), ready: ready, delivered: delivered}
				req := httptest.NewRequestWithContext(ctx, http.MethodGet, "http://localhost/events", nil)
				streams.Go(func() { handler.ServeHTTP(w, req) })
			}
			for range subscribers {
				<-ready
			}
			publish := func() {
				if _, err := log.Publish(text); err != nil {
					b.Fatal(err)
				}
				for range subscribers {
					<-delivered
				}
			}
			publish() // the first update grows each stream's buffer once

			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			for b.Loop() {
				publish()
			}
			runtime.ReadMemStats(&after)
			perPublish := publishAllocs(b, text)
			perDelivery := (float64(after.Mallocs-before.Mallocs)/float64(b.N) - perPublish) / float64(subscribers)
			b.ReportMetric(max(perDelivery, 0), "allocs/delivery")
		})
	}
}

// publishAllocs returns what one Publish of text allocates with nobody
// subscribed: the update and its JSON, once.
func publishAllocs(tb testing.TB, text string) float64 {
	log, err := feed.New(feed.DefaultHistory)
	if err != nil {
		tb.Fatal(err)
	}
	return testing.AllocsPerRun(1000, func() { _, _ = log.Publish(text) })
}
