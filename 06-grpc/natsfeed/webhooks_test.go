package natsfeed_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"realtime/06-grpc/internal/testkit"
	"realtime/06-grpc/natsfeed"
)

// change is one record, or its deletion (nil), as Watch reports it.
type change struct {
	id, record string
	deleted    bool
}

// watch runs Watch on r until t ends, and returns what it reports.
func watch(t *testing.T, r *natsfeed.Registrations) <-chan change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan change, 16)
	done := make(chan error)
	go func() {
		done <- r.Watch(ctx, func(id string, record []byte, _ uint64) {
			changes <- change{id: id, record: string(record), deleted: record == nil}
		})
	}()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done, "Watch")
	})
	return changes
}

func TestRegistrations_ChangeARecordOnlyInPlaceOfItsNewestRevision(t *testing.T) {
	ns := startNATS(t)
	a, err := natsfeed.NewRegistrations(context.Background(), connect(t, ns), natsfeed.Config{})
	require.NoError(t, err)
	b, err := natsfeed.NewRegistrations(context.Background(), connect(t, ns), natsfeed.Config{})
	require.NoError(t, err)
	ctx := context.Background()

	first, ok, err := a.Save(ctx, "wh_1", []byte("one"), 0)
	require.NoError(t, err)
	require.True(t, ok, "a new record")
	_, ok, err = b.Save(ctx, "wh_1", []byte("another one"), 0)
	require.NoError(t, err)
	assert.False(t, ok, "a second record of the same id")

	second, ok, err := b.Save(ctx, "wh_1", []byte("two"), first)
	require.NoError(t, err)
	require.True(t, ok, "in place of the newest revision")
	_, ok, err = a.Save(ctx, "wh_1", []byte("stale"), first)
	require.NoError(t, err)
	assert.False(t, ok, "in place of a revision another server replaced")

	require.NoError(t, a.Delete(ctx, "wh_1"))
	_, ok, err = b.Save(ctx, "wh_1", []byte("after the delete"), second)
	require.NoError(t, err)
	assert.False(t, ok, "a deleted record stays deleted")
}

func TestRegistrations_EveryServerSeesEveryRecordAndItsDeletion(t *testing.T) {
	ns := startNATS(t)
	a, err := natsfeed.NewRegistrations(context.Background(), connect(t, ns), natsfeed.Config{})
	require.NoError(t, err)
	b, err := natsfeed.NewRegistrations(context.Background(), connect(t, ns), natsfeed.Config{})
	require.NoError(t, err)
	_, _, err = a.Save(context.Background(), "wh_before", []byte("made before b watched"), 0)
	require.NoError(t, err)

	changes := watch(t, b)
	assert.Equal(t, change{id: "wh_before", record: "made before b watched"}, testkit.Receive(t, changes, "the record there was"))
	_, _, err = a.Save(context.Background(), "wh_after", []byte("made while b watched"), 0)
	require.NoError(t, err)
	assert.Equal(t, change{id: "wh_after", record: "made while b watched"}, testkit.Receive(t, changes, "a new record"))
	require.NoError(t, a.Delete(context.Background(), "wh_before"))
	assert.Equal(t, change{id: "wh_before", deleted: true}, testkit.Receive(t, changes, "a deletion"))
}

func TestRegistrations_ABucketCreatedAnewHoldsNoneOfTheRecords(t *testing.T) {
	ns := startNATS(t)
	nc := connect(t, ns)
	r, err := natsfeed.NewRegistrations(context.Background(), nc, natsfeed.Config{Check: 10 * time.Millisecond})
	require.NoError(t, err)
	_, _, err = r.Save(context.Background(), "wh_1", []byte("one"), 0)
	require.NoError(t, err)
	changes := watch(t, r)
	require.Equal(t, change{id: "wh_1", record: "one"}, testkit.Receive(t, changes, "the record there was"))

	// As a NATS restarted without its data would have it.
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, js.DeleteKeyValue(context.Background(), "REALTIME_WEBHOOKS"))

	assert.Equal(t, change{id: "wh_1", deleted: true}, testkit.Receive(t, changes, "the record reported gone"))
	require.Eventually(t, func() bool {
		_, ok, err := r.Save(context.Background(), "wh_2", []byte("two"), 0)
		return ok && err == nil
	}, testkit.WaitTimeout, 10*time.Millisecond, "the bucket is there again")
}
