package main

import (
	"context"
	"errors"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// faultProxy forwards every connection it accepts to target, and does to
// them, on demand, what networks do: it cuts them (a reset, or a close), it
// stops forwarding for a while (a stall: to the server, a subscriber that
// reads nothing), and it passes bytes one at a time (a trickle). Its target
// may change (retarget), as a load balancer's does when a server dies.
type faultProxy struct {
	l        net.Listener
	target   atomic.Pointer[string] // where the next connection goes
	accepted atomic.Int64

	stalled   atomic.Pointer[chan struct{}] // closed when the stall ends; nil when none
	trickling atomic.Int64                  // until this time, in UnixNano

	mu    sync.Mutex
	links map[*link]struct{}
	wg    sync.WaitGroup
}

type link struct{ in, out net.Conn }

func newFaultProxy(target string) (*faultProxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &faultProxy{l: l, links: make(map[*link]struct{})}
	p.target.Store(&target)
	p.wg.Go(p.accept)
	return p, nil
}

// retarget sends every connection accepted from now on to target. The open
// ones stay where they are: those to a server that died end with it.
func (p *faultProxy) retarget(target string) { p.target.Store(&target) }

func (p *faultProxy) addr() string { return p.l.Addr().String() }

func (p *faultProxy) accept() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		p.accepted.Add(1)
		out, err := net.Dial("tcp", *p.target.Load())
		if err != nil {
			in.Close() // the server is down, restarting or not moved from yet: the client sees the failure it would see
			continue
		}
		lk := &link{in: in, out: out}
		p.mu.Lock()
		p.links[lk] = struct{}{}
		p.mu.Unlock()
		var halves sync.WaitGroup
		halves.Go(func() { p.pipe(in, out) })
		halves.Go(func() { p.pipe(out, in) })
		p.wg.Go(func() {
			halves.Wait()
			in.Close()
			out.Close()
			p.mu.Lock()
			delete(p.links, lk)
			p.mu.Unlock()
		})
	}
}

// pipe copies src to dst, through whatever fault is on, and passes a close
// on.
func (p *faultProxy) pipe(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if stall := p.stalled.Load(); stall != nil {
				<-*stall
			}
			chunk := buf[:n]
			for len(chunk) > 0 {
				size := len(chunk)
				if time.Now().UnixNano() < p.trickling.Load() {
					size = 1
				}
				if _, werr := dst.Write(chunk[:size]); werr != nil {
					return
				}
				chunk = chunk[size:]
				if size == 1 && len(chunk) > 0 {
					time.Sleep(time.Millisecond) // a trickle: the network's pace, not a wait for anything
				}
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

// cut ends every open connection at both ends: with a reset (RST) when
// reset is true, as a crashed peer or a middlebox does, or with a close
// (FIN).
func (p *faultProxy) cut(reset bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for lk := range p.links {
		for _, c := range []net.Conn{lk.in, lk.out} {
			if tcp, ok := c.(*net.TCPConn); ok && reset {
				_ = tcp.SetLinger(0)
			}
			c.Close()
		}
	}
}

// stall stops all forwarding for d.
func (p *faultProxy) stall(d time.Duration) {
	ch := make(chan struct{})
	if !p.stalled.CompareAndSwap(nil, &ch) {
		return // one stall at a time
	}
	time.AfterFunc(d, func() {
		// Unless close ended it first: whoever takes it out closes it.
		if p.stalled.CompareAndSwap(&ch, nil) {
			close(ch)
		}
	})
}

// trickle passes bytes one at a time for d.
func (p *faultProxy) trickle(d time.Duration) {
	p.trickling.Store(time.Now().Add(d).UnixNano())
}

func (p *faultProxy) close() {
	p.l.Close()
	if stall := p.stalled.Swap(nil); stall != nil {
		close(*stall)
	}
	p.cut(true)
	p.wg.Wait()
}

// hookFaults stands between the server and a webhook receiver and answers
// every third delivery itself, as a failing receiver does: 500, 429 or 503
// with Retry-After, or a connection closed with no answer at all. The others
// it forwards to the receiver. Faults come with deliveries, not with time:
// the sender waits after each failure (a second, doubled for each failure
// in a row), and a fault armed by the clock would meet every retry.
type hookFaults struct {
	srv    *http.Server
	l      net.Listener
	served sync.WaitGroup
	conns  atomic.Int64 // connections the server opened

	mu      sync.Mutex
	rand    *rand.Rand
	count   int         // deliveries so far
	stopped bool        // faults are over
	faults  []time.Time // when each fault was answered
}

func newHookFaults(receiver string, r *rand.Rand) (*hookFaults, error) {
	target, err := url.Parse("http://" + receiver)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &hookFaults{l: l, rand: r}
	forward := httputil.NewSingleHostReverseProxy(target)
	forward.ErrorLog = discardLogger()
	h.srv = &http.Server{
		Handler:  http.HandlerFunc(h.serve(forward)),
		ErrorLog: discardLogger(),
		ConnState: func(_ net.Conn, state http.ConnState) {
			if state == http.StateNew {
				h.conns.Add(1)
			}
		},
	}
	h.served.Go(func() {
		if err := h.srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic(err)
		}
	})
	return h, nil
}

func (h *hookFaults) serve(forward http.Handler) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		h.count++
		fault := -1
		if h.count%3 == 0 && !h.stopped {
			fault = h.rand.IntN(4)
			h.faults = append(h.faults, time.Now())
		}
		h.mu.Unlock()
		switch fault {
		case 0:
			http.Error(w, "failing on purpose", http.StatusInternalServerError)
		case 1:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
		case 2:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		case 3:
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				conn.Close()
			}
		default:
			forward.ServeHTTP(w, r)
		}
	}
}

func (h *hookFaults) addr() string { return h.l.Addr().String() }

func (h *hookFaults) faultTimes() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.faults...)
}

// stop ends the faults: every delivery from now on is forwarded.
func (h *hookFaults) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopped = true
}

func (h *hookFaults) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		h.srv.Close()
	}
	h.served.Wait()
}

// discardLogger keeps http.Server's and the reverse proxy's complaints
// about cut connections, which are the point here, off the report.
func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
