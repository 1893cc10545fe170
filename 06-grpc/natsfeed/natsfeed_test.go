package natsfeed_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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
