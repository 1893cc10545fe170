package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/grpcserver"
	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/natsfeed"
	realtimev1 "realtime/06-grpc/proto/realtime/v1"
	"realtime/06-grpc/server"
)

// The conformance suite: what every transport the server speaks promises,
// stated once. Each transport words the same promise its own way (a poll's
// 410 {"last":L}, an event stream's reset event and a socket's reset message
// say one thing); an adapter per transport reads its answers as items, so one
// test body holds every transport to each promise. A later transport joins
// the suite with an adapter in transports, not with copies of the tests.

// item is one thing a reader learns from the server, in any transport's
// framing: the server's position when the reader opened (a hello, or a
// poll's first answer), an update, a gap (the cursor cannot be served;
// continue from Last), or a refusal of the request.
type item struct {
	Kind   string      // "position", "epoch" (a position without the newest id), "update", "gap" or "refused"
	Update feed.Update // of an update
	Last   uint64      // of a position or a gap: the newest id
	Epoch  string      // of a position or a gap: the server run
	Status int         // of a refusal
	Reason string      // of a refusal: the answer's body
	Retry  string      // of a refusal: its Retry-After, if any
}

// position, update, gap and refused are the items a test expects from a
// server started by start, whose run is "run-1".
func position(last uint64) item { return item{Kind: "position", Last: last, Epoch: "run-1"} }
func update(u feed.Update) item { return item{Kind: "update", Update: u} }
func gap(last uint64) item      { return item{Kind: "gap", Last: last, Epoch: "run-1"} }
func epoch() item               { return item{Kind: "epoch", Epoch: "run-1"} }
func refused(status int, reason, retry string) item {
	return item{Kind: "refused", Status: status, Reason: reason + "\n", Retry: retry}
}

// reader is a transport opened after a cursor.
type reader interface {
	// header is the header of the answer that opened the reader.
	header() http.Header
	// next returns the next item, failing the test if none comes in time.
	next(tb testing.TB) item
}

// transport is one way the server sends updates.
type transport struct {
	name string
	// held: the transport holds its request open while it waits for
	// updates, and so counts against the server's cap on held requests.
	held bool
	// push: the transport pushes updates on a connection that it opens with
	// a hello, its position, which comes first even before a gap. A poll
	// answers a gap alone.
	push bool
	// silent: the transport says nothing before there is something to
	// deliver; a webhook has no connection to open with a hello.
	silent bool
	// epochHello: the hello says the epoch alone, not the newest id: gRPC's
	// header metadata.
	epochHello bool
	// notHTTP: the transport is not requests and answers a browser could
	// make (gRPC): its cursor is a field of a message, which cannot be
	// given twice, and no browser reads its answers, so no browser's
	// defence applies; nor does the HTTP server's cap on held requests.
	notHTTP bool
	// open opens a reader with query, "?after=CURSOR" or "", as a client
	// that starts with that cursor does, on the server srv of log.
	open func(tb testing.TB, srv *httptest.Server, log feed.Store, query string) reader
	// newLog returns an empty log of the kind this run of the suite is on,
	// keeping the given history, with the epoch "run-1".
	newLog func(tb testing.TB, history int) feed.Store
}

// logKind is a kind of log every transport is tested on.
type logKind struct {
	name   string
	newLog func(tb testing.TB, history int) feed.Store
}

// logKinds are the logs the server can read: its own memory, and a NATS
// JetStream stream that several servers share.
func logKinds() []logKind {
	return []logKind{
		{"memory", func(tb testing.TB, history int) feed.Store {
			log, err := feed.New(history, feed.WithEpoch("run-1"))
			require.NoError(tb, err)
			return log
		}},
		{"nats", func(tb testing.TB, history int) feed.Store {
			log, _ := openNATSLog(tb, startNATS(tb), natsfeed.Config{History: history, Epoch: "run-1"})
			return log
		}},
	}
}

// startNATS runs a NATS server with JetStream in the test's process, on a
// directory of its own, until the test ends.
func startNATS(tb testing.TB) *natsfeed.Embedded {
	tb.Helper()
	ns, err := natsfeed.StartEmbedded(tb.TempDir(), "")
	require.NoError(tb, err)
	tb.Cleanup(ns.Shutdown)
	return ns
}

// openNATSLog connects to ns and opens a log on it, as a server does; both
// are closed when the test ends. The connection is the server's: a test
// closes it to cut that server off the broker.
func openNATSLog(tb testing.TB, ns *natsfeed.Embedded, cfg natsfeed.Config) (*natsfeed.Log, *nats.Conn) {
	tb.Helper()
	nc, err := ns.Connect()
	require.NoError(tb, err)
	tb.Cleanup(nc.Close)
	log, err := natsfeed.New(context.Background(), nc, cfg)
	require.NoError(tb, err)
	tb.Cleanup(log.Close)
	return log, nc
}

// startOn runs the real handler, reading log, on a real listener.
func startOn(tb testing.TB, log feed.Store, opts ...server.Option) (*httptest.Server, feed.Store) {
	tb.Helper()
	api := server.New(log, opts...)
	srv := httptest.NewServer(api)
	srv.Client().Timeout = testkit.WaitTimeout // a poll that is held by mistake fails, not hangs
	tb.Cleanup(srv.Close)
	testkit.ShutdownAtCleanup(tb, api)
	return srv, log
}

// transports are the transports the server speaks.
func transports() []transport {
	return []transport{
		{name: "short poll", open: openPoll("")},
		{name: "long poll", held: true, open: openPoll("wait=" + longPollWait.String())},
		{name: "sse", held: true, push: true, open: openSSE},
		{name: "ws", held: true, push: true, open: openWS},
		{name: "webhook", silent: true, open: openWebhook},
		{name: "grpc", push: true, epochHello: true, notHTTP: true, open: openGRPC},
	}
}

// opening is what tr says when it opens on a server whose newest id is last
// and that can serve the reader's cursor: its position, unless it is silent
// or says the epoch alone.
func opening(tr transport, last uint64) []item {
	switch {
	case tr.silent:
		return nil
	case tr.epochHello:
		return []item{epoch()}
	}
	return []item{position(last)}
}

// longPollWait is the wait a long-polling reader asks for. The tests
// publish an update before they read it, so no poll of theirs is held; one
// held by mistake is answered 204 before the test client's own timeout
// (testkit.WaitTimeout), and fails the test with that answer.
const longPollWait = testkit.WaitTimeout / 2

// forEachTransport runs test once per transport, as a subtest named after
// it, and fails the subtest if a goroutine outlives it: the reader's, or one
// the server started for it.
func forEachTransport(t *testing.T, test func(t *testing.T, tr transport)) {
	for _, kind := range logKinds() {
		for _, tr := range transports() {
			tr.newLog = kind.newLog
			t.Run(kind.name+"/"+tr.name, func(t *testing.T) {
				// Registered first, so it runs last: after the server has
				// been closed and shut down by the cleanups of startOn,
				// and the log closed. What ran before, such as the browser
				// the page tests share, is not this subtest's.
				before := goleak.IgnoreCurrent()
				t.Cleanup(func() { goleak.VerifyNone(t, before) })
				test(t, tr)
			})
		}
	}
}

// readItems reads n items from r.
func readItems(tb testing.TB, r reader, n int) []item {
	tb.Helper()
	items := make([]item, n)
	for i := range items {
		items[i] = r.next(tb)
	}
	return items
}

func TestConformance_DeliversEveryUpdateAfterTheCursorOnceAndInOrder(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		for _, tc := range []struct{ name, query string }{
			{"no cursor: from the start", ""},
			{"after 0", "?after=0"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				srv, log := startOn(t, tr.newLog(t, 8))
				a, b := testkit.Publish(t, srv.URL, "a"), testkit.Publish(t, srv.URL, "b")

				r := tr.open(t, srv, log, tc.query)
				want := append(opening(tr, 2), update(a), update(b))
				history := readItems(t, r, len(want))
				c, d := testkit.Publish(t, srv.URL, "c"), testkit.Publish(t, srv.URL, `taxi "at" the <station>`)
				live := readItems(t, r, 2)

				if diff := cmp.Diff(want, history); diff != "" {
					t.Errorf("the position, then the history: mismatch (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff([]item{update(c), update(d)}, live); diff != "" {
					t.Errorf("then what is published after: mismatch (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestConformance_StartsAfterTheCursor(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		for _, tc := range []struct{ name, query string }{
			{"a cursor of this run", "?after=run-1-1"},
			{"a bare id", "?after=1"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				srv, log := startOn(t, tr.newLog(t, 8))
				testkit.Publish(t, srv.URL, "seen")
				b, c := testkit.Publish(t, srv.URL, "b"), testkit.Publish(t, srv.URL, "c")

				want := append(opening(tr, 3), update(b), update(c))
				got := readItems(t, tr.open(t, srv, log, tc.query), len(want))

				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("mismatch (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestConformance_SignalsAGapWithTheServersPosition(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		for _, tc := range []struct{ name, query string }{
			{"a cursor older than the history", "?after=run-1-1"},
			{"a cursor ahead of the newest update", "?after=run-1-9"},
			{"a cursor of an earlier server run", "?after=run-0-3"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				srv, log := startOn(t, tr.newLog(t, 2))
				for _, text := range []string{"a", "b", "c", "d"} {
					testkit.Publish(t, srv.URL, text) // holds 3 and 4
				}
				want := []item{gap(4)}
				if tr.push {
					want = append(opening(tr, 4), gap(4))
				}
				r := tr.open(t, srv, log, tc.query)
				got := readItems(t, r, len(want))
				e := testkit.Publish(t, srv.URL, "after the gap")
				got = append(got, r.next(t))

				if diff := cmp.Diff(append(want, update(e)), got); diff != "" {
					t.Errorf("the gap, then on from the server's position: mismatch (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestConformance_RefusesAMalformedCursorBeforeAnythingElse(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		for _, tc := range []struct{ name, query, reason string }{
			{"not a number", "?after=soon", `after: "soon" is not an update id such as 42, or EPOCH-42`},
			{"negative", "?after=-1", `after: "-1" is not an update id such as 42, or EPOCH-42`},
			{"an epoch with no id", "?after=run-1-", "after: empty; want an update id such as 42, or EPOCH-42"},
			{"a mangled epoch", "?after=run%201-4", `after: "run 1-4": the epoch may hold only letters, digits, '-' and '_'`},
			{"given twice", "?after=1&after=2", "after: given 2 times; give it once"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if (tr.silent || tr.notHTTP) && tc.name == "given twice" {
					t.Skip("a registration's or a SubscribeRequest's cursor is a field of a message, not a query parameter")
				}
				srv, log := startOn(t, tr.newLog(t, 8))
				testkit.Publish(t, srv.URL, "not for a bad cursor")

				got := tr.open(t, srv, log, tc.query).next(t)

				want := refused(http.StatusBadRequest, tc.reason, "") // a one-line reason, and nothing before it
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("mismatch (-want +got):\n%s", diff)
				}
			})
		}
	})
}

func TestConformance_RefusesHeldRequestsPastTheCap(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		if tr.silent && !tr.held {
			t.Skip("it holds no request, and says nothing until there is an update")
		}
		if tr.notHTTP {
			t.Skip("the cap counts the HTTP server's held requests; gRPC's streams are the gRPC server's, uncapped")
		}
		srv, log := startOn(t, tr.newLog(t, 8), server.WithMaxHeld(1))
		// An event stream takes the one place: its hello shows it holds it.
		// (A poll cannot show from outside that it is held.)
		_, stream := openStream(t, srv, "", nil)
		skipHello(t, stream)

		got := tr.open(t, srv, log, "").next(t) // nothing after the cursor: a held transport waits

		want := refused(http.StatusServiceUnavailable, "server busy: 1 requests are held open already; retry in 5s", "5")
		if !tr.held {
			want = position(0) // answered at once, so never refused for the cap
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestConformance_EveryAnswerSaysNosniff(t *testing.T) {
	forEachTransport(t, func(t *testing.T, tr transport) {
		if tr.notHTTP {
			t.Skip("no browser reads it: a browser cannot speak gRPC, so there is nothing for it to sniff")
		}
		for _, tc := range []struct{ name, query string }{
			{"serving", "?after=0"},
			{"a gap", "?after=run-0-1"},
			{"a malformed cursor", "?after=soon"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				srv, log := startOn(t, tr.newLog(t, 8))
				testkit.Publish(t, srv.URL, "a")

				r := tr.open(t, srv, log, tc.query)

				assert.Equal(t, "nosniff", r.header().Get("X-Content-Type-Options"), "the answer that opened it")
			})
		}
	})
}

// pollReader reads GET /updates, asking again after each answer from where
// the answer left it, as a polling client does.
type pollReader struct {
	srv     *httptest.Server
	wait    string // "wait=D" for long polls, "" for short ones
	after   string // the cursor of the next poll
	head    http.Header
	pending []item
}

// openPoll returns the open of a polling transport whose queries add wait.
// Opening polls once: the first answer is what a push transport's hello
// stands for, the reader's position.
func openPoll(wait string) func(tb testing.TB, srv *httptest.Server, log feed.Store, query string) reader {
	return func(tb testing.TB, srv *httptest.Server, _ feed.Store, query string) reader {
		tb.Helper()
		r := &pollReader{srv: srv, wait: wait}
		r.head = r.poll(tb, query, true)
		return r
	}
}

func (r *pollReader) header() http.Header { return r.head }

func (r *pollReader) next(tb testing.TB) item {
	tb.Helper()
	if len(r.pending) == 0 {
		r.poll(tb, "?after="+r.after, false)
	}
	require.NotEmpty(tb, r.pending, "GET /updates?after=%s answered nothing new", r.after)
	got := r.pending[0]
	r.pending = r.pending[1:]
	return got
}

// poll asks GET /updates with query, queues the items its answer says, and
// returns the answer's header.
func (r *pollReader) poll(tb testing.TB, query string, first bool) http.Header {
	tb.Helper()
	switch {
	case r.wait == "":
	case query == "":
		query = "?" + r.wait
	default:
		query += "&" + r.wait
	}
	resp, body := get(tb, r.srv, http.MethodGet, "/updates"+query, nil)
	var answer poll
	switch resp.StatusCode {
	case http.StatusOK:
		require.NoError(tb, json.Unmarshal([]byte(body), &answer), body)
		if first {
			r.pending = append(r.pending, item{Kind: "position", Last: answer.Last, Epoch: answer.Epoch})
		}
		next := answer.Last // nothing after the cursor: it is the newest
		for _, u := range answer.Updates {
			r.pending = append(r.pending, update(u))
			next = u.ID // fewer than "last" promises: the next poll carries on
		}
		r.after = fmt.Sprint(answer.Epoch, "-", next)
	case http.StatusGone:
		require.NoError(tb, json.Unmarshal([]byte(body), &answer), body)
		r.pending = append(r.pending, item{Kind: "gap", Last: answer.Last, Epoch: answer.Epoch})
		r.after = fmt.Sprint(answer.Epoch, "-", answer.Last)
	case http.StatusNoContent: // a long poll's wait ended with nothing new
	default:
		r.pending = append(r.pending, refusal(resp, body))
	}
	return resp.Header
}

// openSSE opens GET /events.
func openSSE(tb testing.TB, srv *httptest.Server, _ feed.Store, query string) reader {
	tb.Helper()
	resp, stream := openStream(tb, srv, query, nil)
	if resp.StatusCode != http.StatusOK {
		body, err := io.ReadAll(resp.Body)
		require.NoError(tb, err)
		return &refusedReader{resp.Header, refusal(resp, string(body))}
	}
	var epoch string // the hello's: every id after it is a cursor of this run
	return &pushReader{head: resp.Header, read: func(tb testing.TB) item {
		tb.Helper()
		e := nextEvent(tb, stream)
		switch e.Type {
		case "hello":
			got := positionItem(tb, "position", e.Data)
			epoch = got.Epoch
			return got
		case "reset":
			got := positionItem(tb, "gap", e.Data)
			require.Equal(tb, fmt.Sprint(epoch, "-", got.Last), e.LastEventID, "a reset moves Last-Event-ID to where the client continues")
			return got
		case "message":
			var u feed.Update
			decodeStrictly(tb, e.Data, &u)
			require.Equal(tb, fmt.Sprint(epoch, "-", u.ID), e.LastEventID, "an update's id is its cursor")
			return update(u)
		}
		require.Failf(tb, "an event the suite does not know", "%+v", e)
		return item{}
	}}
}

// openWS opens GET /ws.
func openWS(tb testing.TB, srv *httptest.Server, _ feed.Store, query string) reader {
	tb.Helper()
	ws, resp, err := tryDialWS(tb, srv, query, nil)
	if err != nil {
		require.NotNil(tb, resp, "the handshake: %v", err)
		// gorilla/websocket keeps the start of a refused handshake's body.
		body, err := io.ReadAll(resp.Body)
		require.NoError(tb, err)
		return &refusedReader{resp.Header, refusal(resp, string(body))}
	}
	return &pushReader{head: resp.Header, read: func(tb testing.TB) item {
		tb.Helper()
		message := nextMessage(tb, ws)
		var control struct {
			Type string `json:"type"`
		}
		require.NoError(tb, json.Unmarshal([]byte(message), &control), message)
		switch control.Type {
		case "hello", "reset":
			var at struct {
				Type  string `json:"type"`
				Last  uint64 `json:"last"`
				Epoch string `json:"epoch"`
			}
			decodeStrictly(tb, message, &at)
			return item{Kind: map[string]string{"hello": "position", "reset": "gap"}[at.Type], Last: at.Last, Epoch: at.Epoch}
		case "": // an update, the one message without a type
			var u feed.Update
			decodeStrictly(tb, message, &u)
			return update(u)
		}
		require.Failf(tb, "a message the suite does not know", "%s", message)
		return item{}
	}}
}

// openWebhook registers a receiver of its own with the cursor of query,
// and reads its deliveries, each checked against the registration's secret.
func openWebhook(tb testing.TB, srv *httptest.Server, _ feed.Store, query string) reader {
	tb.Helper()
	rcv := newReceiver(tb, nil)
	body := `{"url":"` + rcv.URL + `/hook"`
	if query != "" {
		values, err := url.ParseQuery(strings.TrimPrefix(query, "?"))
		require.NoError(tb, err)
		body += `,"after":` + strconv.Quote(values.Get("after"))
	}
	resp, answer := get(tb, srv, http.MethodPost, "/webhooks", strings.NewReader(body+"}"))
	if resp.StatusCode != http.StatusCreated {
		return &refusedReader{resp.Header, refusal(resp, answer)}
	}
	var reg registration
	require.NoError(tb, json.Unmarshal([]byte(answer), &reg), answer)
	return &pushReader{head: resp.Header, read: func(tb testing.TB) item {
		tb.Helper()
		d := rcv.next(tb, reg.Secret)
		var reset struct {
			Type  string `json:"type"`
			Last  uint64 `json:"last"`
			Epoch string `json:"epoch"`
		}
		if json.Unmarshal(d.body, &reset) == nil && reset.Type != "" {
			decodeStrictly(tb, string(d.body), &reset)
			require.Equal(tb, "reset", reset.Type, "the one typed delivery")
			return item{Kind: "gap", Last: reset.Last, Epoch: reset.Epoch}
		}
		var u feed.Update
		decodeStrictly(tb, string(d.body), &u)
		return update(u)
	}}
}

// positionItem is the item of kind whose last and epoch the JSON object
// data holds.
func positionItem(tb testing.TB, kind, data string) item {
	tb.Helper()
	var at struct {
		Last  uint64 `json:"last"`
		Epoch string `json:"epoch"`
	}
	decodeStrictly(tb, data, &at)
	return item{Kind: kind, Last: at.Last, Epoch: at.Epoch}
}

// decodeStrictly decodes the JSON object data into v, failing the test if
// data holds a field that v has not: the suite reads every field a
// transport sends.
func decodeStrictly(tb testing.TB, data string, v any) {
	tb.Helper()
	dec := json.NewDecoder(strings.NewReader(data))
	dec.DisallowUnknownFields()
	require.NoError(tb, dec.Decode(v), data)
}

// refusal is the item of resp, an answer that refused the request, whose
// body is body.
func refusal(resp *http.Response, body string) item {
	return item{Kind: "refused", Status: resp.StatusCode, Reason: body, Retry: resp.Header.Get("Retry-After")}
}

// pushReader reads a transport that pushes items on one connection.
type pushReader struct {
	head http.Header
	read func(tb testing.TB) item
}

func (r *pushReader) header() http.Header { return r.head }

func (r *pushReader) next(tb testing.TB) item {
	tb.Helper()
	return r.read(tb)
}

// refusedReader is a push transport whose request was refused: its one item
// is the refusal.
type refusedReader struct {
	head    http.Header
	refusal item
}

func (r *refusedReader) header() http.Header { return r.head }

func (r *refusedReader) next(tb testing.TB) item {
	tb.Helper()
	got := r.refusal
	r.refusal = item{Kind: "nothing: the request was refused"}
	return got
}

// openGRPC serves log over gRPC, as RunServer does beside srv, and opens a
// Subscribe stream after the cursor of query. It reads the stream as a
// client does: the epoch from the header, each update, and a gap from the
// status that ends the stream (OutOfRange, with an ErrorInfo saying where to
// continue), after which it subscribes again from there, as a poll asks
// again after a 410.
func openGRPC(tb testing.TB, _ *httptest.Server, log feed.Store, query string) reader {
	tb.Helper()
	_, addr := startGRPC(tb, log)
	client := dialGRPC(tb, addr, nil)
	// The reader's whole life: a test reads a few items, and a stream left
	// waiting by mistake fails the test instead of hanging it.
	ctx, cancel := context.WithTimeout(context.Background(), testkit.WaitTimeout)
	tb.Cleanup(cancel)
	values, err := url.ParseQuery(strings.TrimPrefix(query, "?"))
	require.NoError(tb, err)
	r := &grpcReader{ctx: ctx, client: client, cursor: values.Get("after"), hello: true}
	r.subscribe(tb)
	return r
}

// grpcReader reads Subscribe streams, one after another across gaps.
type grpcReader struct {
	ctx    context.Context
	client realtimev1.UpdatesClient
	stream grpc.ServerStreamingClient[realtimev1.Update] // nil after a gap: the next read subscribes again
	cursor string                                        // the next subscription's: the last update read, or where a gap said to go on
	epoch  string                                        // the server run the cursor's ids belong to
	head   metadata.MD
	hello  bool // the first stream's header is still to be read, and said
}

// subscribe opens a stream after the reader's cursor.
func (r *grpcReader) subscribe(tb testing.TB) {
	tb.Helper()
	stream, err := r.client.Subscribe(r.ctx, &realtimev1.SubscribeRequest{After: r.cursor})
	require.NoError(tb, err)
	r.stream = stream
}

// header is the first stream's header metadata, whose keys are lower case.
func (r *grpcReader) header() http.Header { return http.Header(r.head) }

func (r *grpcReader) next(tb testing.TB) item {
	tb.Helper()
	if r.stream == nil {
		r.subscribe(tb) // its header says the epoch the gap named: no news
	}
	if r.hello {
		r.hello = false
		head, err := r.stream.Header()
		if epoch := head.Get(grpcserver.EpochHeader); err == nil && len(epoch) == 1 {
			r.head, r.epoch = head, epoch[0]
			return item{Kind: "epoch", Epoch: epoch[0]}
		}
		// No header: the stream was refused, and Recv returns why.
	}
	u, err := r.stream.Recv()
	if err == nil {
		r.cursor = fmt.Sprint(r.epoch, "-", u.GetId())
		return update(feed.Update{ID: u.GetId(), Data: u.GetData(), Time: u.GetTime().AsTime()})
	}
	st := status.Convert(err)
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok && st.Code() == codes.OutOfRange && info.GetReason() == "CURSOR_GAP" {
			last, err := strconv.ParseUint(info.GetMetadata()["last"], 10, 64)
			require.NoError(tb, err, "the gap's last id: %v", info)
			epoch := info.GetMetadata()["epoch"]
			r.stream, r.cursor, r.epoch = nil, fmt.Sprint(epoch, "-", last), epoch
			return item{Kind: "gap", Last: last, Epoch: epoch}
		}
	}
	// A refusal reads as HTTP's do: the status google.rpc.Code documents
	// for the code ("HTTP Mapping"), and the message as a body's one line.
	return item{Kind: "refused", Status: httpStatusOf(st.Code()), Reason: st.Message() + "\n"}
}

// httpStatusOf is the HTTP status that google.rpc.Code documents for code.
func httpStatusOf(code codes.Code) int {
	switch code {
	case codes.InvalidArgument, codes.OutOfRange, codes.FailedPrecondition:
		return http.StatusBadRequest
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
