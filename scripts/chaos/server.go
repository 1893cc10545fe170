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
	"slices"
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

// servers runs the server's instances: one, restarted in place, or, with a
// NATS, a cluster of several that keep one log on it. Each instance is
// always on the same two ports. servers keeps what each run of the log
// published: a run is an epoch, so that a run of a single server ends with
// its process, and a cluster's run lasts as long as its NATS.
type servers struct {
	bin       string
	nats      string // the URL of the NATS the instances share; "" for a log in each process's memory
	instances []*instance

	mu      sync.Mutex
	runs    []serverRun
	starts  int           // processes started, over every instance
	next    int           // the instance the next update is typed into, round robin over those up
	changed chan struct{} // closed, and replaced, when a process answers a line typed into it
}

// instance is one server of the cluster, or the only one, on its ports.
type instance struct {
	n        int // from 1, for messages
	httpAddr string
	grpcAddr string
	proc     *process // the running one; nil while down (servers.mu)
}

// process is one run of an instance's server.
type process struct {
	cmd       *exec.Cmd
	stdin     io.WriteCloser
	run       int // its log's run: an index in servers.runs
	done      chan struct{}
	published chan uint64   // the ids it says it published, and 0 for each line it did not
	counted   chan struct{} // closed once every one of them is counted
	typed     int           // lines typed into it (servers.mu)
	answered  int           // of which it said it published, or did not (servers.mu)
}

// newServers makes n instances on ports of their own, on the NATS at
// natsURL if that is not empty. None is started.
func newServers(bin, natsURL string, n int) (*servers, error) {
	s := &servers{bin: bin, nats: natsURL, changed: make(chan struct{})}
	for i := range n {
		var addrs [2]string
		for j := range addrs {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return nil, err
			}
			addrs[j] = l.Addr().String()
			defer l.Close() // after every port is chosen: no two the same
		}
		s.instances = append(s.instances, &instance{n: i + 1, httpAddr: addrs[0], grpcAddr: addrs[1]})
	}
	return s, nil
}

// clustered reports whether the instances share a log on NATS.
func (s *servers) clustered() bool { return s.nats != "" }

// start starts a run of instance i and learns its log's epoch.
func (s *servers) start(ctx context.Context, i int) error {
	in := s.instances[i]
	args := []string{"-addr", in.httpAddr, "-grpc-addr", in.grpcAddr, "-max-webhooks", "100"}
	if s.nats != "" {
		args = append(args, "-nats", s.nats)
	}
	cmd := exec.Command(s.bin, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	started := time.Now() // no answer of its own comes before this
	if err := cmd.Start(); err != nil {
		return err
	}
	p := &process{cmd: cmd, stdin: stdin, done: make(chan struct{}), published: make(chan uint64, 1024), counted: make(chan struct{})}
	serving := make(chan struct{})
	var output strings.Builder
	go func() {
		defer close(p.done)
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
			if strings.HasPrefix(line, "not published: ") {
				p.published <- 0
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
		close(p.published)
		if !said {
			close(serving)
		}
		// Wait only once the output is read to its end: it closes the
		// pipe, and "published" lines still in it would not be counted.
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
	}()
	select {
	case <-serving:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-p.done
		return ctx.Err()
	}
	epoch, err := in.epoch(ctx)
	if err != nil {
		_ = cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("instance %d: %w\n%s", in.n, err, output.String())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p.run = slices.IndexFunc(s.runs, func(r serverRun) bool { return r.epoch == epoch })
	if p.run < 0 {
		p.run = len(s.runs)
		s.runs = append(s.runs, serverRun{epoch: epoch, started: started})
	}
	s.starts++
	in.proc = p
	go func() {
		defer close(p.counted)
		for id := range p.published {
			s.mu.Lock()
			s.runs[p.run].last = max(s.runs[p.run].last, id)
			p.answered++
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
		}
	}()
	return nil
}

// startAll starts every instance, one after the other: the first of a
// cluster creates the stream, and the others find it.
func (s *servers) startAll(ctx context.Context) error {
	for i := range s.instances {
		if err := s.start(ctx, i); err != nil {
			s.stopAll()
			return err
		}
	}
	return nil
}

// epoch asks the instance which run its log is, past every proxy.
func (in *instance) epoch(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+in.httpAddr+"/updates?after=0", nil)
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

// publish types text into a running instance, each in turn; while none
// runs, the text is not published, as typing into a stopped server
// publishes nothing.
func (s *servers) publish(text string) {
	s.mu.Lock()
	var p *process
	for range s.instances {
		in := s.instances[s.next]
		s.next = (s.next + 1) % len(s.instances)
		if in.proc != nil {
			p = in.proc
			p.typed++
			break
		}
	}
	s.mu.Unlock()
	if p != nil {
		_, _ = io.WriteString(p.stdin, text+"\n")
	}
}

// settle waits, for at most within, until every running instance has said
// what became of each line typed into it: an update published just before
// the faults ended is one the clients must catch up with, and a publish
// into NATS takes a moment.
func (s *servers) settle(ctx context.Context, within time.Duration) {
	timeout := time.After(within)
	for {
		s.mu.Lock()
		pending := false
		for _, in := range s.instances {
			if p := in.proc; p != nil && p.answered < p.typed {
				pending = true
			}
		}
		changed := s.changed
		s.mu.Unlock()
		if !pending {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			return
		case <-ctx.Done():
			return
		}
	}
}

// up reports whether instance i runs.
func (s *servers) up(i int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.instances[i].proc != nil
}

// stop stops instance i as Ctrl-C does, and waits until every id it said
// it published is counted.
func (s *servers) stop(i int) { s.down(i, false) }

// kill kills instance i mid-stream (SIGKILL: a crash, no goodbye to its
// clients), and waits until every id it said it published is counted.
func (s *servers) kill(i int) { s.down(i, true) }

func (s *servers) down(i int, kill bool) {
	s.mu.Lock()
	p := s.instances[i].proc
	s.instances[i].proc = nil
	s.mu.Unlock()
	if p == nil {
		return
	}
	if kill {
		_ = p.cmd.Process.Kill()
		<-p.done
	} else {
		_ = p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	p.stdin.Close()
	<-p.counted
}

// stopAll stops every instance, at once.
func (s *servers) stopAll() {
	var wg sync.WaitGroup
	for i := range s.instances {
		wg.Go(func() { s.stop(i) })
	}
	wg.Wait()
}

func (s *servers) snapshot() []serverRun {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]serverRun(nil), s.runs...)
}

// processes is how many times an instance was started.
func (s *servers) processes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.starts
}
