package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// pprofServer is a file that compare adds to the server's main package at
// build time (go build -overlay), for -profile: it serves net/http/pprof on
// a loopback port of its own, named by pprofEnv. The chapter's code is
// built as it is; its own handlers never see the profiler.
const pprofServer = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("` + pprofEnv + `"); addr != "" {
		go http.ListenAndServe(addr, nil)
	}
}
`

const pprofEnv = "COMPARE_PPROF_ADDR"

// overlay writes pprofServer into dir and returns a go build -overlay file
// that adds it to the chapter's cmd/server.
func overlay(dir, chapter string) (string, error) {
	src := filepath.Join(dir, "compare_pprof.go")
	if err := os.WriteFile(src, []byte(pprofServer), 0o644); err != nil {
		return "", err
	}
	data, err := json.Marshal(map[string]map[string]string{
		"Replace": {filepath.Join(chapter, "cmd", "server", "zz_compare_pprof.go"): src},
	})
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, "overlay.json")
	return file, os.WriteFile(file, data, 0o644)
}

// profiler takes CPU profiles of servers started with its environment, into
// a folder; a nil profiler takes none. A profiled run's bytes and CPU are not
// reported: the profile's own traffic and the profiler's work would be in
// them.
type profiler struct {
	dir string
}

// freeLoopbackPort returns an address of a loopback port that was free a
// moment ago.
func freeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// env is what a server needs in its environment to be profiled, and the
// address its profiler will listen on.
func (p *profiler) env() (env []string, addr string, err error) {
	if p == nil {
		return nil, "", nil
	}
	addr, err = freeLoopbackPort()
	if err != nil {
		return nil, "", err
	}
	return []string{pprofEnv + "=" + addr}, addr, nil
}

// cpu starts a CPU profile of the server whose profiler listens on addr, for
// d, written to name in the profiler's folder; the returned function waits
// for it and reports its error.
func (p *profiler) cpu(ctx context.Context, addr, name string, d time.Duration) func() error {
	if p == nil || addr == "" {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		done <- p.fetch(ctx, "http://"+addr+"/debug/pprof/profile?seconds="+strconv.Itoa(int(d.Seconds())), name, d)
	}()
	return func() error { return <-done }
}

func (p *profiler) fetch(ctx context.Context, url, name string, d time.Duration) error {
	hc := &http.Client{Timeout: d + 30*time.Second}
	var resp *http.Response
	// The server's profiler starts with it: wait for it to listen.
	for start := time.Now(); ; {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err = hc.Do(req)
		if err == nil {
			break
		}
		if time.Since(start) > 5*time.Second {
			return fmt.Errorf("profile %s: %w", name, err)
		}
		if err := sleepUntil(ctx, time.Now().Add(50*time.Millisecond)); err != nil {
			return err
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", name, resp.Status)
	}
	f, err := os.Create(filepath.Join(p.dir, name))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
