package server

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Limits on the requests the server holds open.
const (
	// busyRetryAfter is the Retry-After of a request refused at the cap:
	// long enough that refused clients do not hammer a full server, short
	// enough that a place freed by a client that left is soon taken again.
	busyRetryAfter = 5 * time.Second
	// minSpareFiles is the fewest file descriptors DefaultMaxHeld leaves for
	// the requests that are not held (see maxHeldFor).
	minSpareFiles = 64
	// unlimitedFiles stands in for the open-file limit where the system has
	// none to ask (Windows, Plan 9): a figure of the order of the usual
	// Linux limits.
	unlimitedFiles = 1 << 16
)

// DefaultMaxHeld is the cap on held requests that fits this process's limit
// on open files, RLIMIT_NOFILE. (Go raises the soft limit to the hard one as
// the program starts, so this is the most the process can open.)
func DefaultMaxHeld() int {
	files, ok := openFileLimit()
	if !ok {
		files = unlimitedFiles
	}
	return maxHeldFor(files)
}

// maxHeldFor is the cap on held requests for a limit of files open files:
// files - max(files/4, minSpareFiles), and at least 1.
//
// Each held request keeps its connection, one file descriptor, for as long
// as it waits. At the limit, accept fails (EMFILE) and net/http retries it
// with a pause, so every new connection hangs: publishes and short polls too,
// and nobody is told why. So at most three quarters of the descriptors are
// held, and a quarter (at least minSpareFiles) is left for what must keep
// working: the listener and the standard streams, publishes, short polls,
// the idle keep-alive connections between them, and the 503s that refuse
// held requests past the cap.
func maxHeldFor(files uint64) int {
	files = min(files, math.MaxInt32) // RLIM_INFINITY; and an int on every platform
	spare := max(files/4, minSpareFiles)
	if files <= spare {
		return 1
	}
	return int(files - spare)
}

// semaphore caps the requests held open waiting for updates (a long poll;
// from chapter 03, an event stream; from 04, a WebSocket). There is one for all of them,
// because they all spend the same file descriptors. A full semaphore refuses
// at once instead of queueing: a queued request would hold its connection
// just the same.
type semaphore chan struct{}

// tryAcquire takes a place if one is free, without waiting.
func (s semaphore) tryAcquire() bool {
	select {
	case s <- struct{}{}:
		return true
	default:
		return false
	}
}

// release gives back a place that tryAcquire took.
func (s semaphore) release() { <-s }

// refuse answers a request that would be held while every place is taken:
// 503 with Retry-After. Answering "nothing new" instead would send the
// client straight back for another try. The connection closes after the
// answer: kept alive until the client comes back, it would hold the very file
// descriptor the cap is there to save.
func (s semaphore) refuse(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.Itoa(int(busyRetryAfter/time.Second)))
	w.Header().Set("Connection", "close")
	reason := fmt.Sprintf("server busy: %d requests are held open already; retry in %v", cap(s), busyRetryAfter)
	http.Error(w, reason, http.StatusServiceUnavailable)
}
