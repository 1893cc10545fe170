package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"realtime/06-grpc/feed"
)

// pollTimeout bounds one short poll: the server answers at once, so a poll
// that takes this long is a server in trouble.
const pollTimeout = 10 * time.Second

// ShortPoll asks GET /updates?after=<cursor> every cfg.Interval.
type ShortPoll struct {
	cfg Config
}

// Receive polls until ctx ends or a poll fails.
func (p *ShortPoll) Receive(ctx context.Context, s *Session) error {
	ticker := time.NewTicker(p.cfg.Interval)
	defer ticker.Stop()
	for {
		pollCtx, cancel := context.WithTimeout(ctx, pollTimeout)
		more, err := poll(pollCtx, p.cfg, s, nil)
		cancel()
		if err != nil {
			return err
		}
		if more {
			continue // the answer was one batch of several: ask for the rest now
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ticker.C:
		}
	}
}

// batch is the answer to GET /updates: 200 with updates, or 410 with only
// Last and Epoch.
type batch struct {
	Updates []Update `json:"updates"`
	Last    uint64   `json:"last"`
	Epoch   string   `json:"epoch"`
}

// poll asks GET /updates once, with the session's cursor and any extra query
// parameters, and hands the answer to the session. It reports more when the
// server holds updates that did not fit the answer.
func poll(ctx context.Context, cfg Config, s *Session, extra url.Values) (more bool, err error) {
	after, epoch := s.Cursor()
	query := url.Values{"after": {feed.Cursor{After: after, Epoch: epoch}.String()}}
	for key, values := range extra {
		query[key] = values
	}
	endpoint := cfg.Server.JoinPath("updates")
	endpoint.RawQuery = query.Encode()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint.String(), nil)
	if err != nil {
		return false, fmt.Errorf("build request: %w", err)
	}
	resp, err := cfg.HTTP.Do(req)
	if err != nil {
		return false, err // already says "Get <url>: ..."
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusNoContent: // a long poll's wait ended: nothing new, same run
		s.Answered(epoch)
		return false, nil
	case http.StatusOK, http.StatusGone:
	default:
		return false, refused(endpoint, resp)
	}
	var answer batch
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return false, fmt.Errorf("GET %s: decode answer: %w", endpoint, err)
	}
	s.Answered(answer.Epoch)
	if resp.StatusCode == http.StatusGone {
		s.Gap(answer.Last)
		return false, nil
	}
	for _, u := range answer.Updates {
		if err := s.Deliver(u); err != nil {
			return false, err
		}
	}
	after, _ = s.Cursor()
	return after < answer.Last, nil
}

// firstLine returns the start of an error body, for messages, escaped as
// an update is: the server's text must not drive the user's terminal.
func firstLine(r io.Reader) string {
	body, _ := io.ReadAll(io.LimitReader(r, 512))
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	return terminalSafe(line)
}
