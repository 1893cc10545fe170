package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"realtime/06-grpc/client"
	"realtime/06-grpc/feed"
	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
	"realtime/06-grpc/server"
	"realtime/06-grpc/webhook"
)

// BenchmarkDelivery publishes b.N updates at random (Poisson) times with a
// mean rate, and measures what each strategy pays to deliver them to one
// client: latency from publish to print, HTTP requests, and bytes on the wire
// (both directions, headers included) per delivered update.
//
//	go test -run '^$' -bench Delivery -benchtime 200x ./client/
func BenchmarkDelivery(b *testing.B) {
	const interval = 100 * time.Millisecond // short polling; 1/10 of the default to keep runs short
	for _, strategy := range client.Strategies() {
		if strategy == "webhook" {
			// Its deliveries come to the client, not through the server's
			// listener, where this benchmark counts: BenchmarkWebhookDelivery.
			continue
		}
		for _, rate := range []float64{2, 50} { // updates per second: rarer than polls, and more often
			b.Run(fmt.Sprintf("strategy=%s/rate=%g", strategy, rate), func(b *testing.B) {
				benchmarkDelivery(b, strategy, interval, rate)
			})
		}
	}
}

// BenchmarkIdleRoundTrip is the floor under BenchmarkDelivery's latency: one
// plain net/http GET on a kept-alive loopback connection, started at the same
// random times, so that the machine is as idle before each as it is before a
// publish. No strategy delivers faster than the machine wakes up to do this.
//
//	go test -run '^$' -bench 'Delivery|IdleRoundTrip' -benchtime 200x ./client/
func BenchmarkIdleRoundTrip(b *testing.B) {
	const rate = 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"updates":[],"last":0,"epoch":"floor"}`))
	}))
	defer srv.Close()
	latencies := make([]time.Duration, 0, b.N)
	for b.Loop() {
		time.Sleep(time.Duration(rand.ExpFloat64() / rate * float64(time.Second)))
		start := time.Now()
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		latencies = append(latencies, time.Since(start))
	}
	slices.Sort(latencies)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(percentile(latencies, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(latencies, 0.99)), "p99-ms")
}

// BenchmarkLoopbackFloor is the floor under every strategy: one write of an
// update-sized message on a loopback TCP connection, and the read that
// receives it on a goroutine already waiting, at the same random times as
// BenchmarkDelivery's publishes. It is what any push pays before its own
// framing, parsing and hand-offs. Run it beside the others: the floor moves
// with the machine and its load.
//
//	go test -run '^$' -bench 'Delivery|IdleRoundTrip|LoopbackFloor' -benchtime 200x ./client/
func BenchmarkLoopbackFloor(b *testing.B) {
	const rate = 2
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer listener.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := listener.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- conn
	}()
	reader, err := net.Dial("tcp", listener.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer reader.Close()
	writer := testkit.Receive(b, accepted, "the listener to accept")
	if writer == nil {
		b.Fatal("accept failed")
	}
	defer writer.Close()
	message := []byte(`{"id":1,"data":"update 1","time":"2026-01-01T00:00:00.000000000Z"}`)
	received := make(chan time.Time)
	go func() {
		buf := make([]byte, 4096)
		for got := 0; ; {
			n, err := reader.Read(buf)
			if err != nil {
				close(received)
				return
			}
			// A message can arrive in pieces; its last byte is its receipt.
			for got += n; got >= len(message); got -= len(message) {
				received <- time.Now()
			}
		}
	}()
	latencies := make([]time.Duration, 0, b.N)
	for b.Loop() {
		time.Sleep(time.Duration(rand.ExpFloat64() / rate * float64(time.Second)))
		start := time.Now()
		if _, err := writer.Write(message); err != nil {
			b.Fatal(err)
		}
		latencies = append(latencies, testkit.Receive(b, received, "the reader to receive the message").Sub(start))
	}
	slices.Sort(latencies)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(percentile(latencies, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(latencies, 0.99)), "p99-ms")
}

func benchmarkDelivery(b *testing.B, strategy string, interval time.Duration, rate float64) {
	log, err := feed.New(feed.DefaultHistory)
	if err != nil {
		b.Fatal(err)
	}
	api := server.New(log)
	srv := httptest.NewUnstartedServer(api)
	testkit.ShutdownAtCleanup(b, api)
	wire := &countingListener{Listener: srv.Listener}
	srv.Listener = wire
	var requests atomic.Int64
	handler := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		handler.ServeHTTP(w, r)
	})
	srv.Start()
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	// The same log over gRPC, its bytes counted on its own listener. Its
	// calls are not counted: one Subscribe carries every update, as one
	// GET /events does.
	grpcListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	grpcWire := &countingListener{Listener: grpcListener}
	grpcSrv := grpcserver.New(log)
	served := make(chan error, 1)
	go func() { served <- grpcSrv.Serve(grpcWire) }()
	b.Cleanup(func() { testkit.Receive(b, served, "Serve to return after the shutdown") })
	testkit.ShutdownAtCleanup(b, grpcSrv)

	receipts := newReceipts(b.N)
	receiver, err := client.NewStrategy(strategy, client.Config{Server: base, GRPC: grpcListener.Addr().String(), Interval: interval, Wait: 30 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	session := client.NewSession(client.SessionOptions{Strategy: strategy, Stdout: receipts, Stderr: &bytes.Buffer{}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = client.Run(ctx, receiver, session, client.DefaultBackoff(), &bytes.Buffer{})
	}()

	b.ResetTimer()
	requests.Store(0)
	wire.bytes.Store(0)
	grpcWire.bytes.Store(0)
	floor := 0     // bytes of the leanest event stream: "id: N\ndata: <update JSON>\n\n"
	wsFloor := 0   // bytes of the leanest WebSocket: one unmasked text frame per update JSON
	grpcFloor := 0 // bytes of the leanest gRPC stream: one DATA frame per message
	for i := 1; i <= b.N; i++ {
		time.Sleep(time.Duration(rand.ExpFloat64() / rate * float64(time.Second)))
		receipts.expect(uint64(i), time.Now())
		u, err := log.Publish("update " + strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		data, _ := json.Marshal(u)
		floor += len(fmt.Sprintf("id: %d\ndata: %s\n\n", u.ID, data))
		wsFloor += wsFrameHeader(len(data)) + len(data)
		grpcFloor += grpcFrameHeader + proto.Size(&realtimev1.Update{Id: u.ID, Data: u.Data, Time: timestamppb.New(u.Time)})
	}
	testkit.Receive(b, receipts.all, "the client to print every update")
	b.StopTimer()
	cancel()
	testkit.Receive(b, done, "Run to return after its context ended")
	wire.bytes.Add(grpcWire.bytes.Load()) // one of the two is 0: a strategy uses one listener

	n := float64(b.N)
	latencies := receipts.latencies()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(percentile(latencies, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(latencies, 0.99)), "p99-ms")
	b.ReportMetric(float64(requests.Load())/n, "req/update")
	b.ReportMetric(float64(wire.bytes.Load())/n, "wire-B/update")
	b.ReportMetric(float64(wire.bytes.Load())/float64(floor), "x-sse-floor")
	b.ReportMetric(float64(wire.bytes.Load())/float64(wsFloor), "x-ws-floor")
	b.ReportMetric(float64(wire.bytes.Load())/float64(grpcFloor), "x-grpc-floor")
}

// grpcFrameHeader is what carries one gRPC message of a server stream at
// the least: its 5-byte prefix (compressed flag, length) and the 9-byte
// header of the HTTP/2 DATA frame it travels in.
const grpcFrameHeader = 5 + 9

// BenchmarkWebhookDelivery is BenchmarkDelivery for one webhook receiver:
// the server POSTs each update to a registered URL, and the receiver checks
// its signature over the raw body and answers 204. Latency runs from Publish
// to the answered delivery; requests and bytes (both directions, headers
// included) are counted on the receiver's connections, where deliveries
// arrive. Its name matches -bench Delivery, so that it runs in the same
// process as the other strategies.
//
//	go test -run '^$' -bench 'Delivery|LoopbackFloor' -benchtime 100x ./client/
func BenchmarkWebhookDelivery(b *testing.B) {
	for _, rate := range []float64{2, 50} { // as BenchmarkDelivery's
		b.Run(fmt.Sprintf("rate=%g", rate), func(b *testing.B) {
			benchmarkWebhookDelivery(b, rate)
		})
	}
}

func benchmarkWebhookDelivery(b *testing.B, rate float64) {
	log, err := feed.New(feed.DefaultHistory)
	if err != nil {
		b.Fatal(err)
	}
	api := server.New(log)
	srv := httptest.NewServer(api)
	defer srv.Close()
	testkit.ShutdownAtCleanup(b, api)

	receipts := newReceipts(b.N)
	var (
		secret   atomic.Pointer[webhook.Secret]
		requests atomic.Int64
	)
	receiver := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		body, err := io.ReadAll(r.Body)
		s := secret.Load()
		if err != nil || s == nil || s.Verify(r.Header, body, time.Now()) != nil {
			http.Error(w, "refused", http.StatusUnauthorized)
			return
		}
		var u feed.Update
		if err := json.Unmarshal(body, &u); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		_ = http.NewResponseController(w).Flush() // the answer is on the wire before the receipt counts its bytes
		_, _ = receipts.Write([]byte(strconv.FormatUint(u.ID, 10) + " " + u.Data))
	}))
	wire := &countingListener{Listener: receiver.Listener}
	receiver.Listener = wire
	receiver.Start()
	defer receiver.Close()

	registration, err := json.Marshal(map[string]any{"url": receiver.URL + "/hook", "after": 0})
	if err != nil {
		b.Fatal(err)
	}
	resp, err := srv.Client().Post(srv.URL+"/webhooks", "application/json", bytes.NewReader(registration))
	if err != nil {
		b.Fatal(err)
	}
	var answer struct {
		Secret string `json:"secret"`
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated {
		b.Fatalf("register: %s, %v", resp.Status, err)
	}
	s, err := webhook.ParseSecret(answer.Secret)
	if err != nil {
		b.Fatal(err)
	}
	secret.Store(&s)

	b.ResetTimer()
	floor := 0   // bytes of the leanest event stream, as BenchmarkDelivery counts it
	wsFloor := 0 // bytes of the leanest WebSocket
	for i := 1; i <= b.N; i++ {
		time.Sleep(time.Duration(rand.ExpFloat64() / rate * float64(time.Second)))
		receipts.expect(uint64(i), time.Now())
		u, err := log.Publish("update " + strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		data, _ := json.Marshal(u)
		floor += len(fmt.Sprintf("id: %d\ndata: %s\n\n", u.ID, data))
		wsFloor += wsFrameHeader(len(data)) + len(data)
	}
	testkit.Receive(b, receipts.all, "the receiver to accept every update")
	b.StopTimer()

	n := float64(b.N)
	latencies := receipts.latencies()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(ms(percentile(latencies, 0.50)), "p50-ms")
	b.ReportMetric(ms(percentile(latencies, 0.99)), "p99-ms")
	b.ReportMetric(float64(requests.Load())/n, "req/update")
	b.ReportMetric(float64(wire.bytes.Load())/n, "wire-B/update")
	b.ReportMetric(float64(wire.bytes.Load())/float64(floor), "x-sse-floor")
	b.ReportMetric(float64(wire.bytes.Load())/float64(wsFloor), "x-ws-floor")
}

// wsFrameHeader is the size of the header of a server's frame (unmasked)
// carrying n bytes: RFC 6455 section 5.2.
func wsFrameHeader(n int) int {
	switch {
	case n <= 125:
		return 2
	case n <= 65535:
		return 4
	}
	return 10
}

// receipts is the client's stdout: it notes when each "<id> <data>" line
// arrives, against the time the benchmark published that id.
type receipts struct {
	mu        sync.Mutex
	published map[uint64]time.Time
	latency   []time.Duration
	want      int
	all       chan struct{}
}

func newReceipts(n int) *receipts {
	return &receipts{published: make(map[uint64]time.Time, n), want: n, all: make(chan struct{})}
}

func (r *receipts) expect(id uint64, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.published[id] = at
}

func (r *receipts) Write(line []byte) (int, error) {
	now := time.Now()
	id, err := strconv.ParseUint(string(line[:bytes.IndexByte(line, ' ')]), 10, 64)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latency = append(r.latency, now.Sub(r.published[id]))
	if len(r.latency) == r.want {
		close(r.all)
	}
	return len(line), nil
}

func (r *receipts) latencies() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(slices.Values(r.latency))
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// countingListener counts every byte read and written on its connections.
type countingListener struct {
	net.Listener
	bytes atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: conn, bytes: &l.bytes}, nil
}

type countingConn struct {
	net.Conn
	bytes *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.bytes.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.bytes.Add(int64(n))
	return n, err
}
