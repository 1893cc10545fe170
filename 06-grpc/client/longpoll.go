package client

import (
	"context"
	"net/url"
	"time"
)

// longPollMargin is how much longer than the wait the client gives the
// server to answer before it gives up on the connection.
const longPollMargin = 15 * time.Second

// LongPoll asks GET /updates?after=<cursor>&wait=<cfg.Wait> and asks again
// the moment each answer arrives, so a poll is always waiting at the server.
type LongPoll struct {
	cfg Config
}

// Receive polls until ctx ends or a poll fails.
func (p *LongPoll) Receive(ctx context.Context, s *Session) error {
	extra := url.Values{"wait": {p.cfg.Wait.String()}}
	for {
		pollCtx, cancel := context.WithTimeout(ctx, p.cfg.Wait+longPollMargin)
		_, err := poll(pollCtx, p.cfg, s, extra) // asks again at once anyway
		cancel()
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}
