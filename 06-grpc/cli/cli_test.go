package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"realtime/06-grpc/cli"
	"realtime/06-grpc/feed"
	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// program is RunServer or RunClient running in the background.
type program struct {
	stdin          *io.PipeWriter
	stdout, stderr testkit.Buffer
	cancel         context.CancelFunc
	done           chan error
}

type runFunc func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error

func start(tb testing.TB, run runFunc, args ...string) *program {
	tb.Helper()
	stdinReader, stdinWriter := io.Pipe()
	p := &program{stdin: stdinWriter, done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() { p.done <- run(ctx, args, stdinReader, &p.stdout, &p.stderr) }()
	tb.Cleanup(func() { p.stop(tb) })
	return p
}

// stop ends the program as SIGINT would, and waits for it to return.
func (p *program) stop(tb testing.TB) error {
	tb.Helper()
	p.cancel()
	p.stdin.Close()
	err := testkit.Receive(tb, p.done, "the program to return after its context ended")
	p.done <- err // a second stop sees the same result
	return err
}

// waitForLines waits for n lines on the program's standard output. If the
// program returns first, the test stops at once with the program's error.
func (p *program) waitForLines(tb testing.TB, n int) []string {
	tb.Helper()
	returned := make(chan error, 1)
	require.Eventually(tb, func() bool {
		select {
		case err := <-p.done:
			p.done <- err
			returned <- err
			return true
		default:
			return len(p.stdout.Lines()) >= n
		}
	}, testkit.WaitTimeout, time.Millisecond, "waiting for %d lines; have:\n%s", n, &p.stdout)
	select {
	case err := <-returned:
		tb.Fatalf("the program returned before printing %d lines: %v\nstdout:\n%s", n, err, &p.stdout)
	default:
	}
	return p.stdout.Lines()
}

// type_ types lines into the program's standard input. A program that does
// not read them fails the test, instead of hanging it: the pipe holds
// nothing until it is read.
func (p *program) type_(tb testing.TB, lines ...string) {
	tb.Helper()
	for _, line := range lines {
		written := make(chan error, 1)
		go func() {
			_, err := io.WriteString(p.stdin, line+"\n")
			written <- err // after the test, stop's close of stdin ends the write
		}()
		require.NoError(tb, testkit.Receive(tb, written, fmt.Sprintf("the program to read the typed line %q", line)))
	}
}

var (
	servingOn   = regexp.MustCompile(`serving on (http://\S+)`)
	servingGRPC = regexp.MustCompile(`serving gRPC on (\S+)`)
)

// grpcAddress is the address of the gRPC listener of the server srv, as
// it printed it.
func grpcAddress(tb testing.TB, srv *program) string {
	tb.Helper()
	srv.stdout.WaitFor(tb, "serving gRPC on")
	return servingGRPC.FindStringSubmatch(srv.stdout.String())[1]
}

// startServer runs the real server on addr, and its gRPC listener on a port
// of the system's choice, and returns its base URL.
func startServer(tb testing.TB, addr string, args ...string) (*program, string) {
	tb.Helper()
	srv := start(tb, cli.RunServer, append([]string{"server", "-addr", addr, "-grpc-addr", "127.0.0.1:0"}, args...)...)
	srv.stdout.WaitFor(tb, "serving on")
	return srv, servingOn.FindStringSubmatch(srv.stdout.String())[1]
}

func TestEndToEnd_WhatIsTypedIntoTheServerIsPrintedByTheClient(t *testing.T) {
	srv, url := startServer(t, "127.0.0.1:0")
	client := start(t, cli.RunClient, "client", "-server", url, "-interval", "5ms")

	srv.type_(t, "driver at 51.5074,-0.1278", "", "driver at 51.5080,-0.1281")
	srv.stdout.WaitFor(t, "published 2")
	srv.type_(t, "arrived")

	got := client.waitForLines(t, 3)
	want := []string{
		"1 driver at 51.5074,-0.1278",
		"2 driver at 51.5080,-0.1281",
		"3 arrived",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	assert.Empty(t, client.stderr.String())
}

func TestEndToEnd_LongPollingClientPrintsWhatIsTypedWithoutWaitingForAnInterval(t *testing.T) {
	srv, url := startServer(t, "127.0.0.1:0")
	client := start(t, cli.RunClient, "client", "-server", url, "-strategy", "long", "-interval", "1h", "-wait", "30s")

	srv.type_(t, "driver at 51.5074,-0.1278")
	client.waitForLines(t, 1)
	srv.type_(t, "arrived")

	got := client.waitForLines(t, 2)
	if diff := cmp.Diff([]string{"1 driver at 51.5074,-0.1278", "2 arrived"}, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	assert.Empty(t, client.stderr.String())
}

func TestEndToEnd_SSEClientPrintsWhatIsTypedFromOneStream(t *testing.T) {
	srv, url := startServer(t, "127.0.0.1:0")
	client := start(t, cli.RunClient, "client", "-server", url, "-strategy", "sse", "-json")

	srv.type_(t, "driver at 51.5074,-0.1278")
	srv.type_(t, "arrived")

	got := client.waitForLines(t, 2)
	assert.Regexp(t, `^\{"id":1,"data":"driver at 51.5074,-0.1278","time":"[^"]+","cursor":"[0-9a-f]{16}-1","strategy":"sse","latency_ms":[0-9.]+\}$`, got[0])
	assert.Regexp(t, `^\{"id":2,"data":"arrived",.*"strategy":"sse"`, got[1])
	assert.Empty(t, client.stderr.String())
}

func TestEndToEnd_WebSocketClientPrintsWhatIsTypedFromOneSocket(t *testing.T) {
	srv, url := startServer(t, "127.0.0.1:0")
	client := start(t, cli.RunClient, "client", "-server", url, "-strategy", "ws", "-json")

	srv.type_(t, "driver at 51.5074,-0.1278")
	srv.type_(t, "arrived")

	got := client.waitForLines(t, 2)
	assert.Regexp(t, `^\{"id":1,"data":"driver at 51.5074,-0.1278","time":"[^"]+","cursor":"[0-9a-f]{16}-1","strategy":"ws","latency_ms":[0-9.]+\}$`, got[0])
	assert.Regexp(t, `^\{"id":2,"data":"arrived",.*"strategy":"ws"`, got[1])
	assert.Empty(t, client.stderr.String())
}

func TestEndToEnd_WhatIsTypedIntoAWebSocketClientIsPublished(t *testing.T) {
	_, url := startServer(t, "127.0.0.1:0")
	talker := start(t, cli.RunClient, "client", "-server", url, "-strategy", "ws")
	listener := start(t, cli.RunClient, "client", "-server", url, "-strategy", "sse")

	talker.type_(t, "taxi at the station", "")
	talker.stderr.WaitFor(t, "not published: ")
	talker.type_(t, "caf\xe9") // Latin-1, not UTF-8: JSON would send it as "caf\ufffd"
	talker.stderr.WaitFor(t, "UTF-8")
	talker.type_(t, "arrived")

	want := []string{"1 taxi at the station", "2 arrived"}
	if diff := cmp.Diff(want, listener.waitForLines(t, 2)); diff != "" {
		t.Errorf("another client (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, talker.waitForLines(t, 2)); diff != "" {
		t.Errorf("the client that typed (-want +got):\n%s", diff)
	}
	talker.stderr.WaitFor(t, "published 2\n")
	assert.Equal(t, "published 1\nnot published: update text is empty or only white space\n"+
		"not published: update text is not valid UTF-8\npublished 2\n", talker.stderr.String(),
		"each outcome on stderr, in the order typed")
}

func TestEndToEnd_WebhookClientPrintsWhatIsTypedAsItIsDelivered(t *testing.T) {
	srv, url := startServer(t, "127.0.0.1:0")
	client := start(t, cli.RunClient, "client", "-server", url, "-strategy", "webhook", "-listen", "127.0.0.1:0", "-json")

	srv.type_(t, "driver at 51.5074,-0.1278")
	srv.type_(t, "arrived")

	got := client.waitForLines(t, 2)
	assert.Regexp(t, `^\{"id":1,"data":"driver at 51.5074,-0.1278","time":"[^"]+","cursor":"[0-9a-f]{16}-1","strategy":"webhook","latency_ms":[0-9.]+\}$`, got[0])
	assert.Regexp(t, `^\{"id":2,"data":"arrived",.*"strategy":"webhook"`, got[1])
	assert.Empty(t, client.stderr.String())
}

func TestEndToEnd_GRPCClientPrintsWhatIsPublishedFromOneStream(t *testing.T) {
	log, err := feed.New(feed.DefaultHistory, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpcserver.New(log)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() { testkit.Receive(t, served, "Serve to return after the shutdown") })
	testkit.ShutdownAtCleanup(t, srv)
	client := start(t, cli.RunClient, "client", "-strategy", "grpc", "-grpc", lis.Addr().String(), "-json")

	_, err = log.Publish("driver at 51.5074,-0.1278")
	require.NoError(t, err)

	got := client.waitForLines(t, 1)
	assert.Regexp(t, `^\{"id":1,"data":"driver at 51.5074,-0.1278","time":"[^"]+","cursor":"run-1-1","strategy":"grpc","latency_ms":[0-9.]+\}$`, got[0])
	assert.Empty(t, client.stderr.String())
}

func TestEndToEnd_AllPrintsWhatIsTypedOncePerStrategyTaggedWithIt(t *testing.T) {
	// Registered first, so checked last: every strategy's goroutines end.
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	srv, url := startServer(t, "127.0.0.1:0")
	client := start(t, cli.RunClient, "client", "-server", url, "-grpc", grpcAddress(t, srv), "-strategy", "all", "-interval", "5ms")

	srv.type_(t, "taxi at the station")

	// Each line is its own, whatever order they came in.
	got := client.waitForLines(t, 6)
	slices.Sort(got)
	for i, strategy := range []string{"grpc", "long", "short", "sse", "webhook", "ws"} {
		assert.Regexp(t, `^`+strategy+` +[0-9]+\.[0-9]ms  1 taxi at the station$`, got[i])
	}
	assert.NoError(t, client.stop(t), "Ctrl-C ends every strategy")
}

func TestServer_ReportsGoroutinesAndMemoryOnlyWithDebug(t *testing.T) {
	_, plain := startServer(t, "127.0.0.1:0")
	resp, err := http.Get(plain + "/debug/runtime")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, "not without -debug")

	_, debug := startServer(t, "127.0.0.1:0", "-debug")
	resp, err = http.Get(debug + "/debug/runtime")
	require.NoError(t, err)
	defer resp.Body.Close()
	var stats map[string]uint64
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&stats))

	assert.Equal(t, http.StatusOK, resp.StatusCode)
	for _, key := range []string{"goroutines", "heap_inuse_bytes", "stack_inuse_bytes", "sys_bytes"} {
		assert.NotZero(t, stats[key], key)
	}

	req, err := http.NewRequest(http.MethodGet, debug+"/debug/runtime", nil)
	require.NoError(t, err)
	req.Host = "rebound.example" // a page whose DNS name now points here
	rebound, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	rebound.Body.Close()
	assert.Equal(t, http.StatusMisdirectedRequest, rebound.StatusCode, "behind the guard, like every other route")
}

func TestEndToEnd_JSONLinesCarryStrategyAndLatency(t *testing.T) {
	srv, url := startServer(t, "127.0.0.1:0")
	client := start(t, cli.RunClient, "client", "-server", url, "-interval", "5ms", "-json")

	srv.type_(t, "hello")

	line := client.waitForLines(t, 1)[0]
	assert.Regexp(t, `^\{"id":1,"data":"hello","time":"[^"]+","cursor":"[0-9a-f]{16}-1","strategy":"short","latency_ms":[0-9.]+\}$`, line)
}

func TestEndToEnd_ClientSurvivesAServerRestartAndReportsTheGap(t *testing.T) {
	first, url := startServer(t, "127.0.0.1:0")
	addr := strings.TrimPrefix(url, "http://")
	client := start(t, cli.RunClient, "client", "-server", url, "-interval", "5ms")
	first.type_(t, "a", "b")
	client.waitForLines(t, 2)

	require.NoError(t, first.stop(t))
	client.stderr.WaitFor(t, "retrying in") // the client noticed, and keeps trying
	second, _ := startServer(t, addr)       // a new run: ids start again at 1

	client.stderr.WaitFor(t, "gap: server cannot resume after update 2; updates may be missing; continuing from 0\n")
	second.type_(t, "c")

	got := client.waitForLines(t, 3)
	if diff := cmp.Diff([]string{"1 a", "2 b", "1 c"}, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestServer_PublishesLinesAndRefusesOnesTooLong(t *testing.T) {
	srv, url := startServer(t, "127.0.0.1:0")

	srv.type_(t, "first\r", strings.Repeat("x", 64<<10+1), "second")
	srv.stdout.WaitFor(t, "published 2")

	assert.Equal(t, "not published: update text is larger than 65536 bytes\n", srv.stderr.String())
	resp, err := http.Get(url + "/updates")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Regexp(t, `"data":"first".*"data":"second"`, string(body), "the \\r of a CRLF line end is not part of the text")
}

func TestServer_KeepsServingAfterStdinCloses(t *testing.T) {
	srv, url := startServer(t, "127.0.0.1:0")

	require.NoError(t, srv.stdin.Close())
	srv.stdout.WaitFor(t, "stdin closed; still serving")

	testkit.Publish(t, url, "still here")
}

func TestServer_ShutsDownCleanlyWhenItsContextEnds(t *testing.T) {
	srv, _ := startServer(t, "127.0.0.1:0")
	assert.NoError(t, srv.stop(t))
}

func TestServer_EndsOpenEventStreamsWhenItShutsDown(t *testing.T) {
	srv, url := startServer(t, "127.0.0.1:0")
	client := &http.Client{Timeout: testkit.WaitTimeout} // a stream left open fails the test, not hangs it
	resp, err := client.Get(url + "/events")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	hello := make([]byte, len("retry:"))
	_, err = io.ReadFull(resp.Body, hello)
	require.NoError(t, err)
	require.Equal(t, "retry:", string(hello), "the stream is open")

	require.NoError(t, srv.stop(t))

	rest, err := io.ReadAll(resp.Body)
	assert.NoError(t, err, "a clean end, not a reset connection")
	assert.NotContains(t, string(rest), "id:", "no update was sent")
}

func TestServer_AllowHostLetsTheNamedHostsThrough(t *testing.T) {
	_, url := startServer(t, "127.0.0.1:0", "-allow-host", "updates.example,lan.example", "-allow-host", "192.0.2.10")
	port := url[strings.LastIndexByte(url, ':'):]
	tests := []struct {
		host   string
		status int
	}{
		{"updates.example" + port, http.StatusOK},
		{"lan.example", http.StatusOK},
		{"192.0.2.10" + port, http.StatusOK},
		{"localhost" + port, http.StatusOK},
		{"other.example" + port, http.StatusMisdirectedRequest},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, url+"/updates", nil)
			require.NoError(t, err)
			req.Host = tt.host
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()

			assert.Equal(t, tt.status, resp.StatusCode)
		})
	}
}

func TestServer_WebhookAllowSetsWhereDeliveriesMayGo(t *testing.T) {
	_, url := startServer(t, "127.0.0.1:0", "-webhook-allow", "10.0.0.0/8,192.0.2.7")
	for dest, status := range map[string]int{
		"http://10.1.2.3/hook":    http.StatusCreated,
		"http://192.0.2.7/hook":   http.StatusCreated,
		"http://127.0.0.1:9/hook": http.StatusBadRequest, // the list replaces loopback
	} {
		t.Run(dest, func(t *testing.T) {
			resp, err := http.Post(url+"/webhooks", "application/json", strings.NewReader(`{"url":"`+dest+`"}`))
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)

			assert.Equal(t, status, resp.StatusCode, "%s", body)
		})
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name    string
		run     runFunc
		args    []string
		message string
	}{
		{"unknown strategy", cli.RunClient, []string{"-strategy", "pigeon"}, `unknown strategy "pigeon": choose one of short, long, sse, ws, webhook, grpc, or all`},
		{"wait zero", cli.RunClient, []string{"-strategy", "long", "-wait", "0s"}, "-wait 0s: must be more than 0 and at most 1m0s"},
		{"wait over a minute", cli.RunClient, []string{"-strategy", "long", "-wait", "2m"}, "-wait 2m0s: must be more than 0 and at most 1m0s"},
		{"server URL without scheme", cli.RunClient, []string{"-server", "127.0.0.1:8080"}, `-server "127.0.0.1:8080": want a URL such as http://127.0.0.1:8080`},
		{"interval zero", cli.RunClient, []string{"-interval", "0s"}, "-interval 0s: must be positive"},
		{"malformed after", cli.RunClient, []string{"-after", "-3"}, `-after: "-3" is not an update id such as 42, or EPOCH-42`},
		{"listen address without port", cli.RunClient, []string{"-strategy", "webhook", "-listen", "127.0.0.1"}, `-listen "127.0.0.1": address 127.0.0.1: missing port in address`},
		{"gRPC target without port", cli.RunClient, []string{"-strategy", "grpc", "-grpc", "127.0.0.1"}, `-grpc "127.0.0.1": want host:port such as 127.0.0.1:9090`},
		{"gRPC target with a scheme", cli.RunClient, []string{"-strategy", "grpc", "-grpc", "http://127.0.0.1:9090"}, `-grpc "http://127.0.0.1:9090": want host:port such as 127.0.0.1:9090`},
		{"gRPC target with an empty port", cli.RunClient, []string{"-strategy", "grpc", "-grpc", "127.0.0.1:"}, `-grpc "127.0.0.1:": want host:port such as 127.0.0.1:9090`},
		{"callback that is not a URL", cli.RunClient, []string{"-strategy", "webhook", "-callback", "hooks.example/taxi"}, `-callback "hooks.example/taxi": want an absolute http or https URL such as https://hooks.example/hook`},
		{"stray argument", cli.RunClient, []string{"extra"}, `unexpected arguments: ["extra"]`},
		{"public address without -expose", cli.RunServer, []string{"-addr", "0.0.0.0:8080"}, `-addr "0.0.0.0:8080" is not a loopback address; add -expose to listen on it`},
		{"address without port", cli.RunServer, []string{"-addr", "127.0.0.1"}, `-addr "127.0.0.1": address 127.0.0.1: missing port in address`},
		{"public gRPC address without -expose", cli.RunServer, []string{"-grpc-addr", "0.0.0.0:9090"}, `-grpc-addr "0.0.0.0:9090" is not a loopback address; add -expose to listen on it`},
		{"gRPC address without port", cli.RunServer, []string{"-grpc-addr", "127.0.0.1"}, `-grpc-addr "127.0.0.1": address 127.0.0.1: missing port in address`},
		{"history zero", cli.RunServer, []string{"-addr", "127.0.0.1:0", "-history", "0"}, "-history: history must be at least 1, got 0"},
		{"heartbeat zero", cli.RunServer, []string{"-addr", "127.0.0.1:0", "-heartbeat", "0s"}, "-heartbeat 0s: must be positive"},
		{"allowed host with a port", cli.RunServer, []string{"-allow-host", "updates.example:8080"}, `invalid value "updates.example:8080" for flag -allow-host: "updates.example:8080" is not a host name or IP address; give one without scheme or port, such as updates.example`},
		{"allowed host that is empty", cli.RunServer, []string{"-allow-host", "a.example,,b.example"}, `invalid value "a.example,,b.example" for flag -allow-host: "" is not a host name or IP address; give one without scheme or port, such as updates.example`},
		{"allowed origin without a scheme", cli.RunServer, []string{"-allow-origin", "app.example"}, `invalid value "app.example" for flag -allow-origin: "app.example" is not an origin; give scheme, host and port alone, such as https://app.example`},
		{"allowed origin with a path", cli.RunServer, []string{"-allow-origin", "https://app.example/page"}, `invalid value "https://app.example/page" for flag -allow-origin: "https://app.example/page" is not an origin; give scheme, host and port alone, such as https://app.example`},
		{"max-held zero", cli.RunServer, []string{"-addr", "127.0.0.1:0", "-max-held", "0"}, "-max-held 0: must be at least 1"},
		{"webhook destination that is no address", cli.RunServer, []string{"-webhook-allow", "10.0.0.0/8,hooks.example"}, `invalid value "10.0.0.0/8,hooks.example" for flag -webhook-allow: "hooks.example" is not an IP address or prefix, such as 10.0.0.0/8 or 192.0.2.7`},
		{"max-webhooks zero", cli.RunServer, []string{"-addr", "127.0.0.1:0", "-max-webhooks", "0"}, "-max-webhooks 0: must be at least 1"},
		{"max-streams zero", cli.RunServer, []string{"-addr", "127.0.0.1:0", "-max-streams", "0"}, "-max-streams 0: must be at least 1"},
		{"nats-listen without an embedded NATS", cli.RunServer, []string{"-nats-listen", "127.0.0.1:4222"}, "-nats-listen and -nats-dir are for -nats embedded"},
		{"public NATS address without -expose", cli.RunServer, []string{"-nats", "embedded", "-nats-listen", "0.0.0.0:4222"}, `-nats-listen "0.0.0.0:4222" is not a loopback address; add -expose to listen on it`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr testkit.Buffer
			err := tt.run(context.Background(), append([]string{"prog"}, tt.args...), strings.NewReader(""), &stdout, &stderr)

			var usage cli.UsageError
			require.ErrorAs(t, err, &usage)
			assert.EqualError(t, err, tt.message)
			assert.Equal(t, 2, cli.ExitCode("prog", err, io.Discard))
		})
	}
}
