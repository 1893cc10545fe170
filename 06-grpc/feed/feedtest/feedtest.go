// Package feedtest is the suite every feed.Store must pass, so that the
// transports can rely on any log alike: the in-memory feed.Log runs it, and
// so must every log that stands in for it.
package feedtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/feed"
)

// Open returns a new, empty store that keeps the newest history updates,
// and closes it when t ends.
type Open func(t *testing.T, history int) feed.Store

// waitTimeout bounds every wait for something a store should do at once.
const waitTimeout = 10 * time.Second

// Run runs the suite against the stores open returns, each test as a
// subtest.
func Run(t *testing.T, open Open) {
	for _, test := range []struct {
		name string
		run  func(t *testing.T, open Open)
	}{
		{"StampsIncreasingIDsFromOne", stampsIncreasingIDsFromOne},
		{"AfterReturnsWhatFollowsTheCursorInOrder", afterReturnsWhatFollowsTheCursorInOrder},
		{"KeepsTheNewestHistoryAndRefusesWhatItCannotServe", keepsTheNewestHistoryAndRefusesWhatItCannotServe},
		{"RefusesTextThatIsNotAnUpdate", refusesTextThatIsNotAnUpdate},
		{"AfterHandsOutABoundedBatch", afterHandsOutABoundedBatch},
		{"ChangedIsClosedByTheNextUpdate", changedIsClosedByTheNextUpdate},
		{"SubscribeAfterPutsEachUpdateInExactlyOnePlace", subscribeAfterPutsEachUpdateInExactlyOnePlace},
		{"SubscribeAfterReportsAGapAndStillSubscribes", subscribeAfterReportsAGapAndStillSubscribes},
		{"ASubscriberThatFallsBehindIsDropped", aSubscriberThatFallsBehindIsDropped},
		{"ConcurrentPublishersMakeOneGaplessOrder", concurrentPublishersMakeOneGaplessOrder},
	} {
		t.Run(test.name, func(t *testing.T) { test.run(t, open) })
	}
}

func publish(t *testing.T, s feed.Store, texts ...string) []feed.Entry {
	t.Helper()
	var entries []feed.Entry
	for _, text := range texts {
		e, err := s.Publish(text)
		require.NoError(t, err)
		entries = append(entries, e)
	}
	return entries
}

func ids(entries []feed.Entry) []uint64 {
	var ids []uint64
	for _, e := range entries {
		ids = append(ids, e.ID)
	}
	return ids
}

var all = feed.Limit{Updates: 1 << 20, Bytes: 1 << 30}

func stampsIncreasingIDsFromOne(t *testing.T, open Open) {
	s := open(t, 8)
	before := time.Now().Add(-time.Second)
	entries := publish(t, s, "a", `taxi "at" the <station>`)

	assert.Equal(t, []uint64{1, 2}, ids(entries))
	assert.Equal(t, uint64(2), s.Last())
	for _, e := range entries {
		assert.WithinRange(t, e.Time, before, time.Now().Add(time.Second))
		want, err := json.Marshal(struct {
			ID   uint64    `json:"id"`
			Data string    `json:"data"`
			Time time.Time `json:"time"`
		}{e.ID, e.Data, e.Time})
		require.NoError(t, err)
		// The JSON leaves <, > and & as they are.
		assert.JSONEq(t, string(want), string(e.JSON))
		assert.NotContains(t, string(e.JSON), `\u003c`)
	}
}

func afterReturnsWhatFollowsTheCursorInOrder(t *testing.T, open Open) {
	s := open(t, 8)
	entries := publish(t, s, "a", "b", "c")
	for _, c := range []feed.Cursor{{After: 0}, {After: 1, Epoch: s.Epoch()}, {After: 3}} {
		got, last, err := s.After(c, all)
		require.NoError(t, err)
		assert.Equal(t, uint64(3), last)
		if c.After == 3 {
			assert.Empty(t, got, "after %v", c)
			continue
		}
		assert.Equal(t, entries[c.After:], got, "after %v", c)
	}
}

func keepsTheNewestHistoryAndRefusesWhatItCannotServe(t *testing.T, open Open) {
	s := open(t, 2)
	entries := publish(t, s, "a", "b", "c", "d")

	got, _, err := s.After(feed.Cursor{After: 2}, all)
	require.NoError(t, err)
	assert.Equal(t, entries[2:], got, "the newest two")

	for _, c := range []feed.Cursor{
		{After: 1},                          // older than the history
		{After: 5},                          // ahead of the newest update
		{After: 3, Epoch: "an-earlier-run"}, // another run's
	} {
		got, last, err := s.After(c, all)
		require.ErrorIs(t, err, feed.ErrGap, "after %v", c)
		assert.Empty(t, got)
		assert.Equal(t, uint64(4), last, "where the client continues")
	}
	got, _, err = s.After(feed.Cursor{After: 0, Epoch: "an-earlier-run"}, all)
	assert.ErrorIs(t, err, feed.ErrGap, "0 is older than this history too")
	assert.Empty(t, got)
}

func refusesTextThatIsNotAnUpdate(t *testing.T, open Open) {
	s := open(t, 8)
	for text, want := range map[string]error{
		"":                                       feed.ErrEmpty,
		" \t\n":                                  feed.ErrEmpty,
		strings.Repeat("x", feed.MaxDataBytes+1): feed.ErrTooLarge,
		"\xff":                                   feed.ErrNotText,
	} {
		_, err := s.Publish(text)
		assert.ErrorIs(t, err, want, "%.20q", text)
	}
	assert.Zero(t, s.Last(), "nothing refused is in the log")
}

func afterHandsOutABoundedBatch(t *testing.T, open Open) {
	s := open(t, 8)
	entries := publish(t, s, "a", "b", "c", "d")

	got, last, err := s.After(feed.Cursor{}, feed.Limit{Updates: 2, Bytes: 1 << 20})
	require.NoError(t, err)
	assert.Equal(t, entries[:2], got)
	assert.Equal(t, uint64(4), last)

	got, _, err = s.After(feed.Cursor{}, feed.Limit{Updates: 8, Bytes: len(entries[0].JSON) + 1})
	require.NoError(t, err)
	assert.Equal(t, entries[:1], got, "as many as fit the bytes")

	got, _, err = s.After(feed.Cursor{}, feed.Limit{Updates: 8, Bytes: 1})
	require.NoError(t, err)
	assert.Equal(t, entries[:1], got, "the first always, whatever its size")
}

func changedIsClosedByTheNextUpdate(t *testing.T, open Open) {
	s := open(t, 8)
	changed := s.Changed()
	select {
	case <-changed:
		t.Fatal("closed before anything was published")
	default:
	}
	publish(t, s, "a")
	select {
	case <-changed:
	case <-time.After(waitTimeout):
		t.Fatal("not closed by the next update")
	}
}

func next(t *testing.T, sub *feed.Subscription) feed.Entry {
	t.Helper()
	select {
	case e, ok := <-sub.Updates():
		require.True(t, ok, "the subscription ended")
		return *e
	case <-time.After(waitTimeout):
		t.Fatal("no update came")
		return feed.Entry{}
	}
}

func subscribeAfterPutsEachUpdateInExactlyOnePlace(t *testing.T, open Open) {
	s := open(t, 8)
	entries := publish(t, s, "a", "b")

	history, last, sub, err := s.SubscribeAfter(feed.Cursor{After: 1, Epoch: s.Epoch()}, 4)
	require.NoError(t, err)
	defer sub.Close()
	assert.Equal(t, entries[1:], history)
	assert.Equal(t, uint64(2), last)

	later := publish(t, s, "c", "d")
	assert.Equal(t, later, []feed.Entry{next(t, sub), next(t, sub)})

	sub.Close()
	sub.Close() // safe twice
	_, ok := <-sub.Updates()
	assert.False(t, ok, "closed")
	assert.False(t, sub.Dropped())
}

func subscribeAfterReportsAGapAndStillSubscribes(t *testing.T, open Open) {
	s := open(t, 2)
	publish(t, s, "a", "b", "c")

	history, last, sub, err := s.SubscribeAfter(feed.Cursor{After: 3, Epoch: "an-earlier-run"}, 4)
	require.ErrorIs(t, err, feed.ErrGap)
	defer sub.Close()
	assert.Empty(t, history)
	assert.Equal(t, uint64(3), last)

	d := publish(t, s, "d")
	assert.Equal(t, d[0], next(t, sub), "on from the newest id")
}

func aSubscriberThatFallsBehindIsDropped(t *testing.T, open Open) {
	s := open(t, 8)
	_, _, slow, err := s.SubscribeAfter(feed.Cursor{}, 1)
	require.NoError(t, err)
	defer slow.Close()
	_, _, reader, err := s.SubscribeAfter(feed.Cursor{}, 4)
	require.NoError(t, err)
	defer reader.Close()

	entries := publish(t, s, "a", "b", "c")

	assert.Equal(t, entries, []feed.Entry{next(t, reader), next(t, reader), next(t, reader)}, "the other subscriber is not held up")
	assert.Equal(t, entries[0], next(t, slow), "what fitted its queue")
	_, ok := <-slow.Updates()
	assert.False(t, ok, "then its channel is closed")
	assert.True(t, slow.Dropped())
}

func concurrentPublishersMakeOneGaplessOrder(t *testing.T, open Open) {
	const publishers, each = 4, 25
	s := open(t, publishers*each)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				_, err := s.Publish(fmt.Sprintf("%d-%d", p, i))
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()

	got, _, err := s.After(feed.Cursor{}, all)
	require.NoError(t, err)
	require.Len(t, got, publishers*each)
	seen := make(map[string]bool)
	for i, e := range got {
		assert.Equal(t, uint64(i+1), e.ID)
		assert.False(t, seen[e.Data], "%s twice", e.Data)
		seen[e.Data] = true
	}
}
