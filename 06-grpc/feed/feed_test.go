package feed_test

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"realtime/06-grpc/feed"
	"realtime/06-grpc/feed/feedtest"
	"realtime/06-grpc/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newLog returns a log with a fixed epoch and a clock that ticks one second
// per update, so updates compare exactly.
func newLog(tb testing.TB, history int) *feed.Log {
	tb.Helper()
	start := time.Date(2026, 11, 24, 19, 3, 11, 0, time.UTC)
	var ticks int
	clock := func() time.Time {
		ticks++
		return start.Add(time.Duration(ticks) * time.Second)
	}
	log, err := feed.New(history, feed.WithEpoch("run-1"), feed.WithClock(clock))
	require.NoError(tb, err)
	return log
}

func publish(tb testing.TB, log *feed.Log, texts ...string) []feed.Update {
	tb.Helper()
	var out []feed.Update
	for _, text := range texts {
		e, err := log.Publish(text)
		require.NoError(tb, err)
		out = append(out, e.Update)
	}
	return out
}

// unlimited asks After for everything it holds.
var unlimited = feed.Limit{Updates: math.MaxInt, Bytes: math.MaxInt}

// updates returns the updates of entries, for comparing.
func updates(entries []feed.Entry) []feed.Update {
	var out []feed.Update
	for _, e := range entries {
		out = append(out, e.Update)
	}
	return out
}

func TestLog_StampsUpdatesWithIncreasingIDsAndTime(t *testing.T) {
	log := newLog(t, 8)

	got := publish(t, log, "a", "b")

	want := []feed.Update{
		{ID: 1, Data: "a", Time: time.Date(2026, 11, 24, 19, 3, 12, 0, time.UTC)},
		{ID: 2, Data: "b", Time: time.Date(2026, 11, 24, 19, 3, 13, 0, time.UTC)},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	assert.Equal(t, uint64(2), log.Last())
}

func TestLog_AfterReturnsEverythingAfterTheCursorInOrder(t *testing.T) {
	log := newLog(t, 8)
	all := publish(t, log, "a", "b", "c")

	for after := range uint64(4) {
		t.Run(fmt.Sprintf("after %d", after), func(t *testing.T) {
			got, last, err := log.After(feed.Cursor{After: after}, unlimited)
			require.NoError(t, err)
			assert.Equal(t, uint64(3), last)
			if diff := cmp.Diff(all[after:], updates(got), cmpEmptyAsNil()); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLog_KeepsOnlyTheNewestHistory(t *testing.T) {
	log := newLog(t, 3)
	all := publish(t, log, "a", "b", "c", "d", "e")

	got, last, err := log.After(feed.Cursor{After: 2}, unlimited)

	require.NoError(t, err, "cursor 2 is just before the oldest held update, 3")
	assert.Equal(t, uint64(5), last)
	if diff := cmp.Diff(all[2:], updates(got)); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestLog_RefusesCursorsItCannotServe(t *testing.T) {
	log := newLog(t, 3)
	publish(t, log, "a", "b", "c", "d", "e") // holds 3, 4, 5

	tests := []struct {
		name   string
		cursor feed.Cursor
	}{
		{"older than the history", feed.Cursor{After: 1}},
		{"much older than the history", feed.Cursor{After: 0}},
		{"ahead of the newest update (an earlier run's id)", feed.Cursor{After: 6}},
		{"from another epoch", feed.Cursor{After: 4, Epoch: "run-0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, last, err := log.After(tt.cursor, unlimited)
			require.ErrorIs(t, err, feed.ErrGap)
			assert.Nil(t, got)
			assert.Equal(t, uint64(5), last, "a gap still tells where to continue")
		})
	}
}

func TestLog_ServesCursorsAtTheEdges(t *testing.T) {
	empty := newLog(t, 3)
	updates, last, err := empty.After(feed.Cursor{After: 0, Epoch: "run-1"}, unlimited)
	require.NoError(t, err, "an empty log serves cursor 0 of its own epoch")
	assert.Empty(t, updates)
	assert.Zero(t, last)

	log := newLog(t, 3)
	publish(t, log, "a", "b", "c", "d", "e")
	updates, last, err = log.After(feed.Cursor{After: 5, Epoch: "run-1"}, unlimited)
	require.NoError(t, err, "the newest id is always servable, even after eviction")
	assert.Empty(t, updates)
	assert.Equal(t, uint64(5), last)
}

func TestLog_RefusesTextThatIsNotAnUpdate(t *testing.T) {
	log := newLog(t, 3)
	tests := []struct {
		name string
		data string
		want error
	}{
		{"empty", "", feed.ErrEmpty},
		{"one byte over the limit", strings.Repeat("x", feed.MaxDataBytes+1), feed.ErrTooLarge},
		{"invalid UTF-8", "caf\xe9", feed.ErrNotText},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := log.Publish(tt.data)
			assert.ErrorIs(t, err, tt.want)
		})
	}
	assert.Zero(t, log.Last(), "nothing refused was published")

	u, err := log.Publish(strings.Repeat("x", feed.MaxDataBytes))
	require.NoError(t, err, "exactly the limit is allowed")
	assert.Equal(t, uint64(1), u.ID)
}

func TestLog_RejectsAnEmptyHistory(t *testing.T) {
	_, err := feed.New(0)
	assert.EqualError(t, err, "history must be at least 1, got 0")
}

func TestLog_DrawsADifferentEpochForEveryRun(t *testing.T) {
	a, err := feed.New(1)
	require.NoError(t, err)
	b, err := feed.New(1)
	require.NoError(t, err)
	assert.NotEmpty(t, a.Epoch())
	assert.NotEqual(t, a.Epoch(), b.Epoch())
}

func TestLog_ConcurrentPublishersAndReadersSeeOneGaplessOrder(t *testing.T) {
	const publishers, each = 8, 200
	log, err := feed.New(publishers * each)
	require.NoError(t, err)

	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				_, err := log.Publish(fmt.Sprintf("p%d-%d", p, i))
				assert.NoError(t, err)
			}
		})
	}
	// A reader races the publishers: whatever it sees must be a gapless prefix.
	wg.Go(func() {
		var cursor uint64
		for cursor < publishers*each {
			got, _, err := log.After(feed.Cursor{After: cursor}, unlimited)
			if !assert.NoError(t, err) {
				return
			}
			for _, u := range got {
				if !assert.Equal(t, cursor+1, u.ID) {
					return
				}
				cursor = u.ID
			}
		}
	})
	wg.Wait()

	got, last, err := log.After(feed.Cursor{}, unlimited)
	require.NoError(t, err)
	assert.Equal(t, uint64(publishers*each), last)
	seen := make(map[string]bool)
	for i, u := range got {
		assert.Equal(t, uint64(i+1), u.ID)
		seen[u.Data] = true
	}
	assert.Len(t, seen, publishers*each, "every published text is held exactly once")
}

func cmpEmptyAsNil() cmp.Option {
	return cmp.FilterValues(func(a, b []feed.Update) bool { return len(a) == 0 && len(b) == 0 }, cmp.Ignore())
}

func TestLog_EncodesEachUpdateOnceAsTheUpdateJSON(t *testing.T) {
	log := newLog(t, 8)

	e, err := log.Publish(`<b> & "quotes"`)
	require.NoError(t, err)

	var decoded feed.Update
	require.NoError(t, json.Unmarshal(e.JSON, &decoded))
	if diff := cmp.Diff(e.Update, decoded); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	assert.Contains(t, string(e.JSON), `"<b> & \"quotes\""`, "no HTML escaping: the JSON is never embedded in a page")
	held, _, err := log.After(feed.Cursor{}, unlimited)
	require.NoError(t, err)
	require.Len(t, held, 1)
	assert.Same(t, &e.JSON[0], &held[0].JSON[0], "readers share the bytes encoded at publish time")
}

func TestLog_AfterHandsOutABoundedBatch(t *testing.T) {
	log := newLog(t, 8)
	all := publish(t, log, "a", "b", "c", "d", "e")
	size := func(u feed.Update) int {
		b, err := json.Marshal(u)
		require.NoError(t, err)
		return len(b)
	}

	tests := []struct {
		name  string
		limit feed.Limit
		want  []feed.Update
	}{
		{"at most Updates updates", feed.Limit{Updates: 2, Bytes: math.MaxInt}, all[:2]},
		{"at most Bytes bytes of JSON", feed.Limit{Updates: 10, Bytes: size(all[0]) + size(all[1]) + 1}, all[:2]},
		{"the first update even when it alone is over Bytes", feed.Limit{Updates: 10, Bytes: 1}, all[:1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, last, err := log.After(feed.Cursor{}, tt.limit)
			require.NoError(t, err)
			assert.Equal(t, uint64(5), last, "last still says how far the log goes")
			if diff := cmp.Diff(tt.want, updates(got)); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLog_RefusesBlankText(t *testing.T) {
	log := newLog(t, 3)
	for _, blank := range []string{" ", "\t\r\n", "\u00a0\u3000"} {
		_, err := log.Publish(blank)
		assert.ErrorIs(t, err, feed.ErrEmpty, "%q", blank)
	}
	assert.Zero(t, log.Last())
}

func TestLog_ServesCursorZeroOfAnotherRun(t *testing.T) {
	log := newLog(t, 3)
	all := publish(t, log, "a", "b")

	got, _, err := log.After(feed.Cursor{After: 0, Epoch: "run-0"}, unlimited)

	require.NoError(t, err, "a client that has seen nothing of an earlier run has nothing to lose")
	if diff := cmp.Diff(all, updates(got)); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestCursor_RoundTripsThroughItsText(t *testing.T) {
	tests := []struct {
		text string
		want feed.Cursor
	}{
		{"42", feed.Cursor{After: 42}},
		{"0", feed.Cursor{}},
		{"3f9a0c1d2e4b5a69-42", feed.Cursor{After: 42, Epoch: "3f9a0c1d2e4b5a69"}},
		{"run-1-7", feed.Cursor{After: 7, Epoch: "run-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			got, err := feed.ParseCursor(tt.text)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.Equal(t, tt.text, got.String())
		})
	}
}

func TestCursor_RefusesMalformedText(t *testing.T) {
	tests := []struct {
		name, text, wantErr string
	}{
		{"empty", "", "empty; want an update id such as 42, or EPOCH-42"},
		{"not a number", "abc", `"abc" is not an update id such as 42, or EPOCH-42`},
		{"negative", "-5", `"-5" is not an update id such as 42, or EPOCH-42`},
		{"an epoch too long", strings.Repeat("e", 65) + "-5", `"` + strings.Repeat("e", 65) + `-5": the epoch before the last '-' is longer than 64 bytes`},
		{"a plus sign", "+5", `"+5" is not an update id such as 42, or EPOCH-42`},
		{"too large", "18446744073709551616", `"18446744073709551616" is too large`},
		{"an epoch with no id", "abc-", "empty; want an update id such as 42, or EPOCH-42"},
		{"an epoch a URL would mangle", "a b-5", `"a b-5": the epoch may hold only letters, digits, '-' and '_'`},
		{"a long value, echoed only in part", strings.Repeat("9", 300),
			`"` + strings.Repeat("9", 100) + `"… (300 bytes) is too large`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := feed.ParseCursor(tt.text)
			assert.EqualError(t, err, tt.wantErr)
		})
	}
}

func TestLog_ChangedIsClosedByTheNextPublish(t *testing.T) {
	log := newLog(t, 3)
	changed := log.Changed()

	select {
	case <-changed:
		t.Fatal("closed before anything was published")
	default:
	}
	publish(t, log, "a")

	select {
	case <-changed:
	default:
		t.Fatal("not closed by Publish")
	}
	select {
	case <-log.Changed():
		t.Fatal("the next waiter must wait for the next update")
	default:
	}
}

// subscribe subscribes at the end of the log, with no history to send.
func subscribe(tb testing.TB, log *feed.Log, queue int) *feed.Subscription {
	tb.Helper()
	history, _, sub, err := log.SubscribeAfter(feed.Cursor{After: log.Last()}, queue)
	require.NoError(tb, err)
	require.Empty(tb, history)
	return sub
}

// next returns the next update sub delivers, or fails the test if none
// comes within testkit.WaitTimeout.
func next(tb testing.TB, sub *feed.Subscription) feed.Update {
	tb.Helper()
	e := testkit.Receive(tb, sub.Updates(), "the next update of the subscription")
	require.NotNil(tb, e, "the subscription ended")
	return e.Update
}

func TestSubscription_ReceivesEveryUpdatePublishedAfterIt(t *testing.T) {
	log := newLog(t, 8)
	publish(t, log, "before")
	sub := subscribe(t, log, 4)
	defer sub.Close()

	want := publish(t, log, "a", "b")

	got := []feed.Update{next(t, sub), next(t, sub)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestSubscribeAfter_PutsEachUpdateInExactlyOneOfHistoryAndSubscription(t *testing.T) {
	log := newLog(t, 8)
	all := publish(t, log, "a", "b")

	history, last, sub, err := log.SubscribeAfter(feed.Cursor{After: 0, Epoch: "run-1"}, 4)
	require.NoError(t, err)
	defer sub.Close()
	all = append(all, publish(t, log, "c")...)

	assert.Equal(t, uint64(2), last)
	if diff := cmp.Diff(all[:2], updates(history)); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(all[2], next(t, sub)); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
}

func TestSubscribeAfter_ReportsAGapAndStillSubscribes(t *testing.T) {
	log := newLog(t, 8)
	publish(t, log, "a", "b")

	history, last, sub, err := log.SubscribeAfter(feed.Cursor{After: 1, Epoch: "run-0"}, 4)
	require.ErrorIs(t, err, feed.ErrGap)
	defer sub.Close()
	c := publish(t, log, "c")

	assert.Empty(t, history)
	assert.Equal(t, uint64(2), last, "where the client continues")
	if diff := cmp.Diff(c[0], next(t, sub)); diff != "" {
		t.Errorf("what follows is delivered: mismatch (-want +got):\n%s", diff)
	}
}

func TestSubscribeAfter_NeitherLosesNorRepeatsUpdatesPublishedMeanwhile(t *testing.T) {
	// Subscribers join at every moment of a stream of publishes: whatever
	// the interleaving, history and subscription together are 1..n, once each.
	const publishers, each, subscribers = 4, 100, 16
	const n = publishers * each
	log, err := feed.New(n)
	require.NoError(t, err)

	got := make(chan []uint64, subscribers)
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range each {
				_, err := log.Publish(fmt.Sprintf("p%d-%d", p, i))
				assert.NoError(t, err)
			}
		})
	}
	for range subscribers {
		wg.Go(func() {
			history, _, sub, err := log.SubscribeAfter(feed.Cursor{}, n)
			if !assert.NoError(t, err) {
				return
			}
			defer sub.Close()
			var ids []uint64
			for _, e := range history {
				ids = append(ids, e.ID)
			}
			for len(ids) < n {
				var e *feed.Entry
				select {
				case e = <-sub.Updates():
				case <-time.After(testkit.WaitTimeout):
				}
				if !assert.NotNil(t, e, "an update within %v, the subscription still open", testkit.WaitTimeout) {
					break
				}
				ids = append(ids, e.ID)
			}
			got <- ids
		})
	}
	wg.Wait()
	close(got)

	want := make([]uint64, n)
	for i := range want {
		want[i] = uint64(i + 1)
	}
	for ids := range got {
		if diff := cmp.Diff(want, ids); diff != "" {
			t.Errorf("mismatch (-want +got):\n%s", diff)
		}
	}
}

func TestSubscription_IsDroppedWhenItFallsBehindAndNeverSlowsThePublisher(t *testing.T) {
	log := newLog(t, 8)
	slow := subscribe(t, log, 2)
	fast := subscribe(t, log, 8)
	defer fast.Close()

	all := publish(t, log, "a", "b", "c") // the slow one reads nothing: the third does not fit

	gotSlow := []feed.Update{next(t, slow), next(t, slow)} // what it had queued
	select {
	case _, open := <-slow.Updates():
		assert.False(t, open, "closed after what was queued")
	default:
		t.Error("the slow subscriber's channel is still open")
	}
	if diff := cmp.Diff(all[:2], gotSlow); diff != "" {
		t.Errorf("mismatch (-want +got):\n%s", diff)
	}
	assert.True(t, slow.Dropped(), "the slow subscriber is told why its channel closed")
	got := []feed.Update{next(t, fast), next(t, fast), next(t, fast)}
	if diff := cmp.Diff(all, got); diff != "" {
		t.Errorf("the others lose nothing: mismatch (-want +got):\n%s", diff)
	}
	assert.False(t, fast.Dropped())
}

func TestSubscription_CloseEndsItAndIsSafeTwice(t *testing.T) {
	log := newLog(t, 8)
	sub := subscribe(t, log, 2)

	sub.Close()
	sub.Close()
	publish(t, log, "after close")

	select {
	case _, open := <-sub.Updates():
		assert.False(t, open)
	default:
		t.Error("the channel is still open after Close")
	}
	assert.False(t, sub.Dropped(), "closed by its owner, not dropped")
}

func TestLog_PassesTheStoreSuite(t *testing.T) {
	feedtest.Run(t, func(t *testing.T, history int) feed.Store {
		log, err := feed.New(history)
		require.NoError(t, err)
		return log
	})
}

func TestLog_AddKeepsTheIDsItIsGiven(t *testing.T) {
	log, err := feed.New(4, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	at := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)

	first, err := log.Add(feed.Update{ID: 1, Data: "a", Time: at})
	require.NoError(t, err)
	_, err = log.Add(feed.Update{ID: 1, Data: "again", Time: at})
	assert.Error(t, err, "an id already held")

	got, last, err := log.After(feed.Cursor{}, feed.Limit{Updates: 8, Bytes: 1 << 20})
	require.NoError(t, err)
	assert.Equal(t, []feed.Entry{first}, got)
	assert.Equal(t, uint64(1), last)
}

func TestLog_AddAfterAGapStartsTheHistoryThereAndDropsEverySubscriber(t *testing.T) {
	log, err := feed.New(4, feed.WithEpoch("run-1"))
	require.NoError(t, err)
	at := time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)
	_, err = log.Add(feed.Update{ID: 1, Data: "a", Time: at})
	require.NoError(t, err)
	_, _, sub, err := log.SubscribeAfter(feed.Cursor{After: 1}, 4)
	require.NoError(t, err)

	var added []feed.Entry
	for id := uint64(7); id <= 12; id++ { // 2 to 6 never came
		e, err := log.Add(feed.Update{ID: id, Data: fmt.Sprint(id), Time: at})
		require.NoError(t, err)
		added = append(added, e)
	}

	_, ok := <-sub.Updates()
	assert.False(t, ok, "a subscriber that missed 2 to 6 is ended")
	assert.True(t, sub.Dropped(), "as one that fell behind: it resumes, and is told of the gap")
	_, _, err = log.After(feed.Cursor{After: 1}, feed.Limit{Updates: 8, Bytes: 1 << 20})
	assert.ErrorIs(t, err, feed.ErrGap)
	got, last, err := log.After(feed.Cursor{After: 8}, feed.Limit{Updates: 8, Bytes: 1 << 20})
	require.NoError(t, err)
	assert.Equal(t, added[2:], got, "the newest four, from where the gap left off")
	assert.Equal(t, uint64(12), last)
}

func TestLog_WithLastGoesOnFromThereWithNothingOlder(t *testing.T) {
	log, err := feed.New(4, feed.WithEpoch("run-1"), feed.WithLast(7))
	require.NoError(t, err)
	_, _, sub, err := log.SubscribeAfter(feed.Cursor{After: 7, Epoch: "run-1"}, 4)
	require.NoError(t, err, "a client at 7 missed nothing")
	defer sub.Close()

	e, err := log.Add(feed.Update{ID: 8, Data: "h", Time: time.Date(2026, 11, 26, 7, 0, 0, 0, time.UTC)})
	require.NoError(t, err)

	assert.Equal(t, uint64(8), log.Last())
	got, ok := <-sub.Updates()
	require.True(t, ok, "8 follows 7: no gap, the subscriber stays")
	assert.Equal(t, e, *got)
	_, _, err = log.After(feed.Cursor{After: 6, Epoch: "run-1"}, feed.Limit{Updates: 8, Bytes: 1 << 20})
	assert.ErrorIs(t, err, feed.ErrGap, "7 is not held")
}

func TestLog_EndDropsEverySubscriberAndWakesEveryWaiter(t *testing.T) {
	log := newLog(t, 4)
	publish(t, log, "a")
	_, _, sub, err := log.SubscribeAfter(feed.Cursor{After: 1, Epoch: "run-1"}, 4)
	require.NoError(t, err)
	changed := log.Changed()

	log.End()

	assert.True(t, ended(sub), "a subscriber is ended")
	assert.True(t, sub.Dropped(), "as after a gap: it resumes from its cursor, elsewhere")
	assert.True(t, isClosed(changed), "a waiter on Changed is woken")

	t.Run("and afterwards", func(t *testing.T) {
		assert.True(t, isClosed(log.Changed()), "Changed answers at once: a waiter would wait for an update that never comes")
		_, err := log.Publish("b")
		assert.ErrorIs(t, err, feed.ErrEnded)
		_, err = log.Add(feed.Update{ID: 2, Data: "b"})
		assert.ErrorIs(t, err, feed.ErrEnded)
		_, _, late, err := log.SubscribeAfter(feed.Cursor{After: 1, Epoch: "run-1"}, 4)
		require.NoError(t, err)
		assert.True(t, ended(late), "a subscriber that comes late is ended too")
		assert.True(t, late.Dropped())
		log.End() // and ending it again is harmless
	})
}

// isClosed reports whether ch is closed now, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// ended reports whether sub's channel is closed now, without waiting; it
// must hold no update.
func ended(sub *feed.Subscription) bool {
	select {
	case _, ok := <-sub.Updates():
		return !ok
	default:
		return false
	}
}
