package natsfeed_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/feed/feedtest"
	"realtime/06-grpc/natsfeed"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// startNATS starts an embedded NATS server for t alone, and stops it when
// t ends.
func startNATS(t *testing.T) *natsfeed.Embedded {
	t.Helper()
	ns, err := natsfeed.StartEmbedded(t.TempDir(), "")
	require.NoError(t, err)
	t.Cleanup(ns.Shutdown)
	return ns
}

// connect opens a connection to ns, closed when t ends: each server of a
// cluster has its own.
func connect(t *testing.T, ns *natsfeed.Embedded) *nats.Conn {
	t.Helper()
	nc, err := ns.Connect()
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	return nc
}

// open opens the log on the stream named in cfg, as one server does, and
// closes it when t ends.
func open(t *testing.T, nc *nats.Conn, cfg natsfeed.Config) *natsfeed.Log {
	t.Helper()
	log, err := natsfeed.New(context.Background(), nc, cfg)
	require.NoError(t, err)
	t.Cleanup(log.Close)
	return log
}

func TestLog_PassesTheStoreSuite(t *testing.T) {
	feedtest.Run(t, func(t *testing.T, history int) feed.Store {
		return open(t, connect(t, startNATS(t)), natsfeed.Config{History: history})
	})
}

func TestLog_ServersOnOneStreamShareIDsHistoryAndEpoch(t *testing.T) {
	ns := startNATS(t)
	a := open(t, connect(t, ns), natsfeed.Config{History: 8, Epoch: "run-1"})
	first, err := a.Publish("before b started")
	require.NoError(t, err)
	b := open(t, connect(t, ns), natsfeed.Config{History: 8, Epoch: "run-2"})

	_, _, sub, err := a.SubscribeAfter(feed.Cursor{After: 1, Epoch: "run-1"}, 4)
	require.NoError(t, err)
	defer sub.Close()
	second, err := b.Publish("published on b")
	require.NoError(t, err)

	assert.Equal(t, "run-1", b.Epoch(), "the stream's epoch, not its own")
	assert.Equal(t, uint64(2), second.ID, "one sequence of ids")
	got, _, err := b.After(feed.Cursor{Epoch: "run-1"}, feed.Limit{Updates: 8, Bytes: 1 << 20})
	require.NoError(t, err)
	assert.Equal(t, []feed.Entry{first, second}, got, "b holds what a published before it started")
	select {
	case e := <-sub.Updates():
		assert.Equal(t, second, *e, "a's subscriber gets what b published")
	case <-time.After(10 * time.Second):
		t.Error("a's subscriber did not get what b published")
	}
}

func TestLog_ACursorFromAServerAheadOfThisOneIsWaitedForNotAGap(t *testing.T) {
	ns := startNATS(t)
	a := open(t, connect(t, ns), natsfeed.Config{History: 64})
	b := open(t, connect(t, ns), natsfeed.Config{History: 64})
	for range 50 {
		// a has e when Publish returns; b's copy may not have it yet.
		e, err := a.Publish("read on a")
		require.NoError(t, err)
		_, _, sub, err := b.SubscribeAfter(feed.Cursor{After: e.ID, Epoch: a.Epoch()}, 1)
		require.NoError(t, err, "resuming on b after update %d", e.ID)
		sub.Close()
	}
}

func TestLog_ARestartedServerResumesTheSameRun(t *testing.T) {
	ns := startNATS(t)
	nc := connect(t, ns)
	a, err := natsfeed.New(context.Background(), nc, natsfeed.Config{History: 8})
	require.NoError(t, err)
	e, err := a.Publish("a")
	require.NoError(t, err)
	a.Close()

	again := open(t, nc, natsfeed.Config{History: 8})
	got, _, err := again.After(feed.Cursor{After: 0, Epoch: a.Epoch()}, feed.Limit{Updates: 8, Bytes: 1 << 20})
	require.NoError(t, err)
	assert.Equal(t, a.Epoch(), again.Epoch())
	assert.Equal(t, []feed.Entry{e}, got)
}

func TestLog_PublishSaysUnavailableWhenItsNATSIsGone(t *testing.T) {
	ns := startNATS(t)
	log := open(t, connect(t, ns), natsfeed.Config{History: 8, Timeout: 100 * time.Millisecond})
	ns.Shutdown()

	_, err := log.Publish("lost?")

	assert.ErrorIs(t, err, feed.ErrUnavailable)
}

// deleteStream deletes the stream under the servers that use it, as a NATS
// restarted without its data, or "nats stream rm", does.
func deleteStream(t *testing.T, nc *nats.Conn) {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, js.DeleteStream(t.Context(), natsfeed.DefaultStream))
}

// createAnew deletes the stream and creates it again with the given epoch,
// as another server's New does when it finds no stream.
func createAnew(t *testing.T, nc *nats.Conn, epoch string) {
	t.Helper()
	deleteStream(t, nc)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	_, err = js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name:     natsfeed.DefaultStream,
		Subjects: []string{"feed." + natsfeed.DefaultStream},
		MaxMsgs:  8,
		Metadata: map[string]string{"realtime-epoch": epoch},
	})
	require.NoError(t, err)
}

func TestLog_AStreamThatIsGoneIsCreatedAnewAsANewRun(t *testing.T) {
	ns := startNATS(t)
	log := open(t, connect(t, ns), natsfeed.Config{History: 8, Epoch: "run-1", Check: 10 * time.Millisecond})
	for _, text := range []string{"a", "b", "c"} {
		_, err := log.Publish(text)
		require.NoError(t, err)
	}
	_, _, sub, err := log.SubscribeAfter(feed.Cursor{After: 3, Epoch: "run-1"}, 4)
	require.NoError(t, err)
	defer sub.Close()
	changed := log.Changed()

	deleteStream(t, connect(t, ns))

	require.Eventually(t, func() bool { return log.Epoch() != "run-1" }, 10*time.Second, 10*time.Millisecond,
		"the log still follows run-1")
	select {
	case _, ok := <-sub.Updates():
		assert.False(t, ok, "a subscriber of run-1 gets nothing of run-2")
		assert.True(t, sub.Dropped(), "it is dropped: it resumes, and is told of the new run")
	case <-time.After(10 * time.Second):
		t.Error("a subscriber of run-1 is not dropped")
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Error("a waiter on Changed is not woken")
	}
	e, err := log.Publish("x")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), e.ID, "the first id of the stream this server created anew")
	assert.Equal(t, "x", e.Data)
}

func TestLog_PublishNoticesAStreamCreatedAnew(t *testing.T) {
	ns := startNATS(t)
	log := open(t, connect(t, ns), natsfeed.Config{History: 8, Epoch: "run-1", Check: time.Hour})
	for _, text := range []string{"a", "b", "c"} {
		_, err := log.Publish(text)
		require.NoError(t, err)
	}
	nc := connect(t, ns)
	createAnew(t, nc, "run-2")
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for _, text := range []string{"d", "e"} {
		_, err := js.Publish(t.Context(), "feed."+natsfeed.DefaultStream, []byte(text))
		require.NoError(t, err)
	}

	e, err := log.Publish("x")

	require.NoError(t, err)
	assert.Equal(t, uint64(3), e.ID)
	assert.Equal(t, "x", e.Data, "what this Publish published, not update 3 of run-1")
	assert.Equal(t, "run-2", log.Epoch())
	got, _, err := log.After(feed.Cursor{Epoch: "run-2"}, feed.Limit{Updates: 8, Bytes: 1 << 20})
	require.NoError(t, err)
	var texts []string
	for _, e := range got {
		texts = append(texts, e.Data)
	}
	assert.Equal(t, []string{"d", "e", "x"}, texts, "run-2 from its start")
}

func TestLog_OpensAPurgedStreamAndGoesOnFromItsNewestID(t *testing.T) {
	ns := startNATS(t)
	nc := connect(t, ns)
	a := open(t, nc, natsfeed.Config{History: 8})
	for _, text := range []string{"a", "b"} {
		_, err := a.Publish(text)
		require.NoError(t, err)
	}
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	stream, err := js.Stream(t.Context(), natsfeed.DefaultStream)
	require.NoError(t, err)
	require.NoError(t, stream.Purge(t.Context()))

	b, err := natsfeed.New(context.Background(), connect(t, ns), natsfeed.Config{History: 8, Timeout: time.Second})
	require.NoError(t, err, "update 2 is gone: there is nothing to wait for")
	t.Cleanup(b.Close)
	_, _, sub, err := b.SubscribeAfter(feed.Cursor{After: 2, Epoch: a.Epoch()}, 4)
	require.NoError(t, err, "a client that read update 2 missed nothing")
	defer sub.Close()
	e, err := a.Publish("c")
	require.NoError(t, err)

	assert.Equal(t, uint64(3), e.ID)
	select {
	case got, ok := <-sub.Updates():
		require.True(t, ok, "the subscriber was dropped")
		assert.Equal(t, e, *got)
	case <-time.After(10 * time.Second):
		t.Error("the subscriber did not get update 3")
	}
}

func TestLog_PublishReadsAnUpdateItsCopyDidNotGetFromTheStream(t *testing.T) {
	log := open(t, connect(t, startNATS(t)), natsfeed.Config{History: 8, Timeout: 200 * time.Millisecond})
	natsfeed.StopFollowing(log)

	e, err := log.Publish("taken")

	require.NoError(t, err, "the stream took it: an error would have the client send it again, and it would be there twice")
	assert.Equal(t, uint64(1), e.ID)
	assert.Equal(t, "taken", e.Data)
	assert.JSONEq(t, fmt.Sprintf(`{"id":1,"data":"taken","time":%q}`, e.Time.Format(time.RFC3339Nano)), string(e.JSON))
}

func TestLog_CloseReturnsWhileItsNATSIsGone(t *testing.T) {
	ns, err := natsfeed.StartEmbedded(t.TempDir(), "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.URL(), nats.MaxReconnects(-1)) // as cli connects: it waits for the broker to come back
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	log, err := natsfeed.New(context.Background(), nc, natsfeed.Config{History: 8, Timeout: 100 * time.Millisecond})
	require.NoError(t, err)
	ns.Shutdown()

	closed := make(chan struct{})
	go func() {
		log.Close()
		close(closed)
	}()

	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Error("Close waits for a broker that is gone")
		<-closed // and goleak would report it
	}
	nc.Close()
	select {
	case <-natsfeed.Stopped(log): // and then goleak finds nothing left
	case <-time.After(30 * time.Second):
		t.Error("the consumer does not stop once the connection is closed")
	}
}

func TestLog_AMessageThatIsNotAnUpdateKeepsItsIDButNotItsText(t *testing.T) {
	ns := startNATS(t)
	log := open(t, connect(t, ns), natsfeed.Config{History: 8})
	js, err := jetstream.New(connect(t, ns))
	require.NoError(t, err)
	for _, raw := range []string{"\xff\xfe", " \n "} { // published by someone with access to the broker, not by a server
		_, err := js.Publish(t.Context(), "feed."+natsfeed.DefaultStream, []byte(raw))
		require.NoError(t, err)
	}
	_, err = js.Publish(t.Context(), "feed."+natsfeed.DefaultStream, make([]byte, feed.MaxDataBytes+1))
	assert.Error(t, err, "the stream refuses a message larger than an update")

	e, err := log.Publish("after them")
	require.NoError(t, err)

	assert.Equal(t, uint64(3), e.ID)
	got, _, err := log.After(feed.Cursor{}, feed.Limit{Updates: 8, Bytes: 1 << 20})
	require.NoError(t, err)
	require.Equal(t, 3, len(got), "every id, in order: no gap for the clients")
	for _, e := range got[:2] {
		assert.NoError(t, feed.CheckText(e.Data), "update %d reaches clients as text", e.ID)
	}
}

func TestLog_AnIDThatIsNotAfterTheNewestStartsANewCopy(t *testing.T) {
	log := open(t, connect(t, startNATS(t)), natsfeed.Config{History: 8, Check: time.Hour})
	for _, text := range []string{"a", "b"} {
		_, err := log.Publish(text)
		require.NoError(t, err)
	}
	_, _, sub, err := log.SubscribeAfter(feed.Cursor{After: 2, Epoch: log.Epoch()}, 4)
	require.NoError(t, err)
	defer sub.Close()

	natsfeed.Deliver(log, 1, "not a") // the consumer follows something else than the copy holds

	select {
	case _, ok := <-sub.Updates():
		assert.False(t, ok, "the subscriber got an update")
	case <-time.After(10 * time.Second):
		t.Fatal("the copy goes on as if nothing happened")
	}
	got, _, err := log.After(feed.Cursor{}, feed.Limit{Updates: 8, Bytes: 1 << 20})
	require.NoError(t, err)
	require.Len(t, got, 2)
	assert.Equal(t, "a", got[0].Data, "the new copy holds the stream as it is")
}
