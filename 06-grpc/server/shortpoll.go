package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"realtime/06-grpc/feed"
)

// batch is the answer to GET /updates. Updates holds each update's JSON as
// the log encoded it once, for every reader.
type batch struct {
	Updates []json.RawMessage `json:"updates"`
	Last    uint64            `json:"last"`
	Epoch   string            `json:"epoch"`
}

// maxBatch bounds one answer, so that it costs memory in proportion to this
// limit and never to the history: 1,024 updates of 64 KiB, JSON-escaped,
// would be hundreds of megabytes in one buffer. A client that gets fewer
// updates than "last" promises asks again at once.
var maxBatch = feed.Limit{Updates: 256, Bytes: 1 << 20}

// handleShortPoll answers GET /updates?after=CURSOR at once with the held
// updates after the cursor (a bounded batch), or 410 Gone when the cursor
// cannot be served.
func handleShortPoll(log feed.Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cursor, err := parseCursor(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		entries, last, err := log.After(cursor, maxBatch)
		if errors.Is(err, feed.ErrGap) {
			writeJSON(w, http.StatusGone, gapAnswer{Last: last, Epoch: log.Epoch()})
			return
		}
		updates := make([]json.RawMessage, len(entries)) // "updates": [], never null
		for i, e := range entries {
			updates[i] = e.JSON
		}
		writeJSON(w, http.StatusOK, batch{Updates: updates, Last: last, Epoch: log.Epoch()})
	})
}

// parseCursor reads ?after=CURSOR: "EPOCH-ID", or a bare id, which skips the
// restart check; missing means 0.
func parseCursor(r *http.Request) (feed.Cursor, error) {
	value, ok, err := queryValue(r, "after")
	if err != nil || !ok {
		return feed.Cursor{}, err
	}
	cursor, err := feed.ParseCursor(value)
	if err != nil {
		return cursor, fmt.Errorf("after: %w", err)
	}
	return cursor, nil
}

// queryValue returns the query parameter name, and whether it was given. A
// query that does not parse is an error (url.Values would drop the pair it
// cannot read, and ?after=%zz would mean "from the start"), and so is a
// parameter given twice: with "first wins", a proxy and the server could
// each read a different one.
func queryValue(r *http.Request, name string) (string, bool, error) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", false, fmt.Errorf("query %s: %w", feed.Quote(r.URL.RawQuery), err)
	}
	values := query[name]
	switch len(values) {
	case 0:
		return "", false, nil
	case 1:
		return values[0], true, nil
	}
	return "", false, fmt.Errorf("%s: given %d times; give it once", name, len(values))
}
