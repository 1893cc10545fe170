package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// build builds the chapter's server into dir. With brokenResume, the
// server is built with a feed that drops the first update after every
// resumed cursor (go build -overlay), a bug the run must catch.
func build(ctx context.Context, chapter, dir string, brokenResume bool) (string, error) {
	bin := filepath.Join(dir, "server")
	args := []string{"build", "-o", bin}
	if brokenResume {
		overlay, err := breakResume(chapter, dir)
		if err != nil {
			return "", err
		}
		args = append(args, "-overlay", overlay)
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/server")...)
	cmd.Dir = chapter
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	return bin, nil
}

// breakResume writes a copy of the chapter's feed/feed.go in which both
// ways of reading after a cursor (After, for polls and webhooks, and
// SubscribeAfter, for streams) skip the first update after any cursor but
// 0, and returns the overlay that builds it in.
func breakResume(chapter, dir string) (string, error) {
	original := filepath.Join(chapter, "feed", "feed.go")
	src, err := os.ReadFile(original)
	if err != nil {
		return "", err
	}
	broken := string(src)
	for _, loop := range []string{
		"for id := c.After + 1; id <= l.last && len(entries) < limit.Updates; id++ {",
		"for id := c.After + 1; id <= l.last; id++ {",
	} {
		if strings.Count(broken, loop) != 1 {
			return "", fmt.Errorf("%s: no single %q to break: the feed changed, and -break-resume with it", original, loop)
		}
		broken = strings.Replace(broken, loop, strings.Replace(loop, "c.After + 1", "c.After + 1 + min(c.After, 1)", 1), 1)
	}
	file := filepath.Join(dir, "feed_broken.go")
	if err := os.WriteFile(file, []byte(broken), 0o644); err != nil {
		return "", err
	}
	overlay, _ := json.Marshal(map[string]map[string]string{"Replace": {original: file}}) // strings: cannot fail
	path := filepath.Join(dir, "overlay.json")
	return path, os.WriteFile(path, overlay, 0o644)
}

// servers runs the server, one process at a time, always on the same two
// ports, and keeps what each run published.
type servers struct {
	bin      string
	httpAddr string
	grpcAddr string

	mu   sync.Mutex
	runs []serverRun
	proc *process // the running one; nil while restarting
}

// process is one run of the server.
type process struct {
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	run       int // its index in servers.runs
	done      chan struct{}
	published chan uint64   // the ids it says it published
	counted   chan struct{} // closed once every one of them is counted
}

func newServers(bin string) (*servers, error) {
	var addrs [2]string
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		addrs[i] = l.Addr().String()
		l.Close()
	}
	return &servers{bin: bin, httpAddr: addrs[0], grpcAddr: addrs[1]}, nil
}

// start starts a run of the server and learns its epoch.
func (s *servers) start(ctx context.Context) error {
	cmd := exec.Command(s.bin, "-addr", s.httpAddr, "-grpc-addr", s.grpcAddr, "-max-webhooks", "100")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, stdin: stdin, done: make(chan struct{}), published: make(chan uint64, 1024), counted: make(chan struct{})}
	serving := make(chan struct{})
	var output strings.Builder
	go func() {
		defer close(p.published)
		lines := bufio.NewScanner(stdout)
		said := false
		for lines.Scan() {
			line := lines.Text()
			if rest, ok := strings.CutPrefix(line, "published "); ok {
				if id, err := strconv.ParseUint(rest, 10, 64); err == nil {
					p.published <- id
				}
				continue
			}
			if !said {
				output.WriteString(line + "\n")
				if strings.HasPrefix(line, "serving gRPC on ") {
					said = true
					close(serving)
				}
			}
		}
		if !said {
			close(serving)
		}
	}()
	go func() {
		_ = cmd.Wait()
		close(p.done)
	}()
	select {
	case <-serving:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		return ctx.Err()
	}
	epoch, err := s.epoch(ctx)
	if err != nil {
		_ = cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%w\n%s", err, output.String())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p.run = len(s.runs)
	s.runs = append(s.runs, serverRun{epoch: epoch})
	s.proc = p
	go func() {
		defer close(p.counted)
		for id := range p.published {
			s.mu.Lock()
			s.runs[p.run].last = max(s.runs[p.run].last, id)
			s.mu.Unlock()
		}
	}()
	return nil
}

// epoch asks the server which run it is, past every proxy.
func (s *servers) epoch(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.httpAddr+"/updates?after=0", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var answer struct{ Epoch string }
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&answer); err != nil || answer.Epoch == "" {
		return "", fmt.Errorf("GET /updates: no epoch (%v)", err)
	}
	return answer.Epoch, nil
}

// publish types text into the running server; while it restarts, the text
// is not published, as typing into a stopped server publishes nothing.
func (s *servers) publish(text string) {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p != nil {
		_, _ = io.WriteString(p.stdin, text+"\n")
	}
}

// stop stops the running server as Ctrl-C does, and waits until every id
// it said it published is counted.
func (s *servers) stop() {
	s.mu.Lock()
	p := s.proc
	s.proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.stdin.Close()
	<-p.counted
}

func (s *servers) snapshot() []serverRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]serverRun(nil), s.runs...)
}
