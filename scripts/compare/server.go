package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// serverProc is the chapter's server, running as a process of its own with
// its goroutine and memory figures served (-debug). What it is sent on
// stdin and what it prints are counted, so that its socket traffic can be
// told apart from them.
type serverProc struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	base     *url.URL
	grpcAddr string
	pprof    string        // where its profiler listens; "" without one
	done     chan struct{} // closed when the process has exited
	waitErr  error

	mu      sync.Mutex // serializes writes to stdin
	stdinN  atomic.Int64
	printed atomic.Int64 // bytes of stdout and stderr
	output  lockedBuffer // the first lines it prints, for an error
}

// startServer starts the server on free loopback ports, with flags added,
// and returns once it says where it serves.
func startServer(ctx context.Context, bins binaries, flags ...string) (*serverProc, error) {
	args := append([]string{"-addr", "127.0.0.1:0", "-grpc-addr", "127.0.0.1:0", "-debug"}, flags...)
	cmd := exec.Command(bins.server, args...)
	env, pprofAddr, err := bins.prof.env()
	if err != nil {
		return nil, err
	}
	cmd.Env = append(os.Environ(), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = cmd.Stdout // one pipe, one reader: the order of the lines is kept
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &serverProc{cmd: cmd, stdin: stdin, pprof: pprofAddr, done: make(chan struct{})}
	addrs := make(chan string, 2)
	go func() {
		lines := bufio.NewScanner(stdout)
		for lines.Scan() {
			line := lines.Text()
			s.printed.Add(int64(len(line) + 1))
			s.output.keep(line)
			for _, prefix := range []string{"serving on ", "serving gRPC on "} {
				if rest, ok := strings.CutPrefix(line, prefix); ok {
					addrs <- prefix + rest
				}
			}
		}
		_, _ = io.Copy(io.Discard, stdout) // a line too long to scan: keep the server from blocking
	}()
	go func() {
		s.waitErr = cmd.Wait()
		close(s.done)
	}()

	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for s.base == nil || s.grpcAddr == "" {
		select {
		case a := <-addrs:
			if rest, ok := strings.CutPrefix(a, "serving gRPC on "); ok {
				s.grpcAddr = rest
			} else if s.base, err = url.Parse(strings.TrimPrefix(a, "serving on ")); err != nil {
				s.stop()
				return nil, err
			}
		case <-s.done:
			return nil, fmt.Errorf("the server exited: %v\n%s", s.waitErr, s.output.String())
		case <-timeout.C:
			s.stop()
			return nil, fmt.Errorf("the server did not say where it serves within 10s\n%s", s.output.String())
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		}
	}
	return s, nil
}

// publish types text into the server, as a user at its terminal would.
func (s *serverProc) publish(text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := io.WriteString(s.stdin, text+"\n")
	s.stdinN.Add(int64(n))
	return err
}

// stop interrupts the server, as Ctrl-C does, and kills it if it has not
// exited within 10 seconds.
func (s *serverProc) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
	_ = s.stdin.Close()
}

// usage is what the server process has used so far, as Linux counts it.
type usage struct {
	cpu      time.Duration // user and system time
	bytes    int64         // bytes its reads and writes moved, stdin and stdout included
	syscalls int64         // its read and write system calls, stdin and stdout included
	ok       bool          // false where /proc does not tell
}

// clockTicks is Linux's USER_HZ, the unit of /proc/PID/stat's times: 100
// on every architecture Go supports.
const clockTicks = 100

func (s *serverProc) usage() usage {
	pid := strconv.Itoa(s.cmd.Process.Pid)
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return usage{}
	}
	io, err := os.ReadFile("/proc/" + pid + "/io")
	if err != nil {
		return usage{}
	}
	// The command name may hold spaces and parentheses: the fields start
	// after its last ')'. utime and stime are fields 14 and 15.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+1:])
	fields := strings.Fields(rest)
	if len(fields) < 13 {
		return usage{}
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return usage{}
	}
	var bytes, syscalls int64
	for line := range strings.SplitSeq(string(io), "\n") {
		name, value, _ := strings.Cut(line, ":")
		var sum *int64
		switch name {
		case "rchar", "wchar":
			sum = &bytes
		case "syscr", "syscw":
			sum = &syscalls
		default:
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return usage{}
		}
		*sum += n
	}
	return usage{cpu: time.Duration(utime+stime) * time.Second / clockTicks, bytes: bytes, syscalls: syscalls, ok: true}
}

// socketBytes is what went through the server's sockets between two
// readings of its usage: all its reads and writes, less its stdin and its
// printed lines.
func (s *serverProc) socketBytes(before, after usage, stdinBefore, printedBefore int64) int64 {
	return after.bytes - before.bytes - (s.stdinN.Load() - stdinBefore) - (s.printed.Load() - printedBefore)
}

// runtimeStats is the server's GET /debug/runtime.
type runtimeStats struct {
	Goroutines int64 `json:"goroutines"`
	HeapInuse  int64 `json:"heap_inuse_bytes"`
	StackInuse int64 `json:"stack_inuse_bytes"`
}

func (s *serverProc) stats(ctx context.Context, hc *http.Client) (runtimeStats, error) {
	var st runtimeStats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base.JoinPath("debug", "runtime").String(), nil)
	if err != nil {
		return st, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /debug/runtime: %s", resp.Status)
	}
	return st, json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&st)
}

// lockedBuffer keeps the first lines a process prints; a process's own
// goroutines may write it while another reads it.
type lockedBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *lockedBuffer) keep(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.lines) < 50 {
		b.lines = append(b.lines, line)
	}
}

// Write keeps what a process writes to stderr, a write at a time.
func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.keep(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}
