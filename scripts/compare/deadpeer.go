package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"realtime/06-grpc/client"
)

// DeadPeerResult is how long the server took to let go of a subscriber that
// stopped answering without closing anything: a frozen process, a laptop
// lid shut, a host gone. For a connection, until the server's goroutine
// count was back where it was before the subscriber connected; for a
// webhook receiver, from the publish until the server counted a failed
// delivery.
type DeadPeerResult struct {
	Strategy string        `json:"strategy"`
	Noticed  time.Duration `json:"noticed_ns"` // 0 when not noticed within GaveUp
	GaveUp   time.Duration `json:"gave_up_after_ns"`
}

// measureDeadPeer connects one subscriber of strategy to a server of its own
// through a relay, and then freezes the relay: it forwards nothing more in
// either direction and closes nothing, as a peer that has died says nothing.
func measureDeadPeer(ctx context.Context, bins binaries, strategy string, wait time.Duration) (DeadPeerResult, error) {
	res := DeadPeerResult{Strategy: strategy, GaveUp: wait}
	srv, err := startServer(ctx, bins)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	hc := &http.Client{Timeout: 10 * time.Second}
	defer hc.CloseIdleConnections()
	if strategy == "webhook" {
		return deadReceiver(ctx, srv, hc, res)
	}

	// Where the server stands before the subscriber: twice, so that the
	// connection these requests keep open is in the count.
	if _, err := srv.stats(ctx, hc); err != nil {
		return res, err
	}
	before, err := srv.stats(ctx, hc)
	if err != nil {
		return res, err
	}

	target := srv.base.Host
	if strategy == "grpc" {
		target = srv.grpcAddr
	}
	r, err := newRelay(target)
	if err != nil {
		return res, err
	}
	defer r.close()
	viaRelay := &url.URL{Scheme: "http", Host: r.addr()}
	subscriberHC := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer subscriberHC.CloseIdleConnections()
	cfg := client.Config{Server: viaRelay, HTTP: subscriberHC, GRPC: r.addr(), Interval: shortPollInterval, Wait: longPollWait}
	_, stop, err := subscribe(ctx, srv, strategy, cfg, 1)
	if err != nil {
		return res, err
	}
	defer stop()

	r.freeze()
	frozen := time.Now()
	stop() // the subscriber is gone; the relay keeps its connections open and silent
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Since(frozen) < wait {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return res, ctx.Err()
		}
		st, err := srv.stats(ctx, hc)
		if err != nil {
			return res, err
		}
		if st.Goroutines <= before.Goroutines {
			res.Noticed = time.Since(frozen)
			return res, nil
		}
	}
	return res, nil
}

// deadReceiver registers a webhook receiver that accepts connections and
// then says nothing, publishes one update, and times how long the server
// takes to count the delivery as failed.
func deadReceiver(ctx context.Context, srv *serverProc, hc *http.Client, res DeadPeerResult) (DeadPeerResult, error) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return res, err
	}
	var held []net.Conn
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			held = append(held, c)
		}
	}()
	defer func() {
		silent.Close()
		<-accepted
		for _, c := range held {
			c.Close()
		}
	}()

	body, _ := json.Marshal(map[string]any{"url": "http://" + silent.Addr().String() + "/hook"})
	var reg struct{ ID string }
	if err := call(ctx, hc, http.MethodPost, srv.base.JoinPath("webhooks").String(), body, http.StatusCreated, &reg); err != nil {
		return res, err
	}
	if err := srv.publish("update 1"); err != nil {
		return res, err
	}
	published := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for time.Since(published) < res.GaveUp {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return res, ctx.Err()
		}
		var state struct{ Failures int }
		if err := call(ctx, hc, http.MethodGet, srv.base.JoinPath("webhooks", reg.ID).String(), nil, http.StatusOK, &state); err != nil {
			return res, err
		}
		if state.Failures > 0 {
			res.Noticed = time.Since(published)
			return res, nil
		}
	}
	return res, nil
}

// call sends a request with an optional JSON body and decodes the answer,
// which must have status want.
func call(ctx context.Context, hc *http.Client, method, target string, body []byte, want int, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %s: %s", method, target, resp.Status, bytes.TrimSpace(answer))
	}
	return json.Unmarshal(answer, v)
}

// relay forwards each connection it accepts to target, until it is frozen.
type relay struct {
	l      net.Listener
	target string
	frozen chan struct{}
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

func newRelay(target string) (*relay, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{l: l, target: target, frozen: make(chan struct{}), closed: make(chan struct{})}
	r.wg.Go(r.accept)
	return r, nil
}

func (r *relay) addr() string { return r.l.Addr().String() }

func (r *relay) accept() {
	for {
		in, err := r.l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", r.target)
		if err != nil {
			in.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, in, out)
		r.mu.Unlock()
		r.wg.Go(func() { r.pipe(in, out) })
		r.wg.Go(func() { r.pipe(out, in) })
	}
}

// pipe copies src to dst until src ends, and then ends dst's writing half,
// as a relay that passes a close on must. Once the relay is frozen it
// passes on nothing, a close included, until the relay is closed.
func (r *relay) pipe(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-r.frozen:
			<-r.closed
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if tcp, ok := dst.(*net.TCPConn); ok {
				_ = tcp.CloseWrite()
			}
			return
		}
	}
}

// freeze stops all forwarding and accepts no more connections; nothing is
// closed.
func (r *relay) freeze() {
	close(r.frozen)
	r.l.Close()
}

func (r *relay) close() {
	r.once.Do(func() {
		select {
		case <-r.frozen:
		default:
			r.freeze()
		}
		close(r.closed)
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
}
