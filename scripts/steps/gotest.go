package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// testFunc is one Test function of a chapter state.
type testFunc struct {
	Dir    string // package folder, slash-separated, relative to the chapter
	Name   string
	source string
}

// testFuncs returns every TestXxx function in the _test.go files under dir,
// as the go command sees them (testdata and dot folders skipped).
func testFuncs(dir string) ([]testFunc, error) {
	var funcs []testFunc
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != dir && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, p, data, parser.SkipObjectResolution)
		if err != nil {
			return fmt.Errorf("parse %s: %w", p, err)
		}
		rel, _ := filepath.Rel(dir, p)
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !isTestName(fn.Name.Name) {
				continue
			}
			start, end := fset.Position(fn.Pos()).Offset, fset.Position(fn.End()).Offset
			funcs = append(funcs, testFunc{Dir: path.Dir(filepath.ToSlash(rel)), Name: fn.Name.Name, source: string(data[start:end])})
		}
		return nil
	})
	return funcs, err
}

func isTestName(name string) bool {
	rest, ok := strings.CutPrefix(name, "Test")
	if !ok || name == "TestMain" {
		return false
	}
	return rest == "" || !(rest[0] >= 'a' && rest[0] <= 'z')
}

// newTests returns the tests of after that before lacks or has with other
// source: the tests a red change adds or changes.
func newTests(before, after string) ([]testFunc, error) {
	old, err := testFuncs(before)
	if err != nil {
		return nil, err
	}
	cur, err := testFuncs(after)
	if err != nil {
		return nil, err
	}
	sources := make(map[string]string, len(old))
	for _, t := range old {
		sources[t.Dir+"."+t.Name] = t.source
	}
	var changed []testFunc
	for _, t := range cur {
		if source, ok := sources[t.Dir+"."+t.Name]; !ok || source != t.source {
			changed = append(changed, t)
		}
	}
	return changed, nil
}

const (
	// redTimeout bounds a red's run when its failure block gives no
	// -timeout: a red that hangs must fail the proof, not stall CI for go
	// test's default ten minutes. Flags given later on the line win.
	redTimeout = 2 * time.Minute
	// greenTimeout bounds every test of a chapter at a green state: the
	// chapters' slowest package takes about 30s on the CI machine.
	greenTimeout = 5 * time.Minute
)

// testEvent is one line of go test -json.
type testEvent struct {
	Action      string
	Package     string
	ImportPath  string // build-output events name the package here
	Test        string
	Output      string
	FailedBuild string
}

// compileError is one error line of the compiler (or of vet, which go test
// runs too): "calc/calc_test.go:6:12: undefined: Add".
type compileError struct {
	File string // relative to the chapter, as go test prints it from there
	Line string // the whole line
}

var compileErrorLine = regexp.MustCompile(`^(?:\./)?([^\s:]+\.go):\d+(?::\d+)?: \S`)

// RedRun is what running a red's new tests printed.
type RedRun struct {
	Command     string              // the command, as a learner types it in the state's folder
	Output      string              // what it printed, scratch paths shown as "…/"
	BuildFailed bool                // a package of a new test did not build
	Errors      []compileError      // the build's error lines, in order
	BuildKey    string              // the first line that says why the build failed
	Failed      map[string]bool     // tests (and subtests) that failed, by name
	Passed      []string            // new tests that did not fail: each one is a problem
	Keys        map[string][]string // per failed top-level test: the lines that say why
}

// runRed runs tests, the new tests of a red, in the chapter state in dir.
// The output shows dir's parent as "…/", so name dir after the chapter.
func runRed(ctx context.Context, dir, module string, tests []testFunc, flags []string) (RedRun, error) {
	pattern, dirs := testPattern(tests)
	run := RedRun{
		Command: redCommand(tests, flags),
		Failed:  make(map[string]bool),
		Keys:    make(map[string][]string),
	}
	args := slices.Concat([]string{"test", "-count=1", "-timeout", redTimeout.String()}, flags, []string{"-run", pattern}, dirs)
	cmd := exec.CommandContext(ctx, "go", append([]string{"test", "-json"}, args[1:]...)...)
	cmd.Dir = dir
	cmd.Env = goEnv()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run() // a red fails: the events say how
	if ctx.Err() != nil {
		return run, ctx.Err()
	}

	var text strings.Builder
	type pkgTest struct{ pkg, name string }
	byTest := make(map[pkgTest][]string)
	var order []pkgTest // failed top-level tests, in the order they failed
	buildFailed := make(map[string]bool)
	for _, line := range bytes.Split(stdout.Bytes(), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var e testEvent
		if line[0] != '{' || json.Unmarshal(line, &e) != nil {
			text.Write(line)
			text.WriteByte('\n')
			continue
		}
		text.WriteString(e.Output)
		if e.Test != "" && e.Output != "" {
			top, _, _ := strings.Cut(e.Test, "/")
			key := pkgTest{e.Package, top}
			byTest[key] = append(byTest[key], strings.Split(strings.TrimSuffix(e.Output, "\n"), "\n")...)
		}
		switch {
		case e.Action == "fail" && e.FailedBuild != "":
			buildFailed[e.Package] = true
		case e.Action == "fail" && e.Test != "":
			run.Failed[e.Test] = true
			if !strings.Contains(e.Test, "/") {
				order = append(order, pkgTest{e.Package, e.Test})
			}
		}
	}
	text.Write(stderr.Bytes())
	if len(run.Failed) > 0 {
		// What a learner sees: go test without -json prints each failure
		// after its --- FAIL line, and no === RUN lines.
		plain := exec.CommandContext(ctx, "go", args...)
		plain.Dir = dir
		plain.Env = goEnv()
		out, _ := plain.CombinedOutput() // it fails, as the json run did
		text.Reset()
		text.Write(out)
	}
	run.Output = strings.ReplaceAll(text.String(), filepath.Dir(dir)+string(filepath.Separator), "…/")

	for _, line := range strings.Split(run.Output, "\n") {
		if m := compileErrorLine.FindStringSubmatch(line); m != nil {
			run.Errors = append(run.Errors, compileError{File: m[1], Line: line})
		}
	}
	for _, t := range tests {
		importPath := module
		if t.Dir != "." {
			importPath += "/" + t.Dir
		}
		switch {
		case buildFailed[importPath]:
			run.BuildFailed = true
		case run.Failed[t.Name]:
		default: // passed, skipped, or never run: none of them fails
			run.Passed = append(run.Passed, t.Name)
		}
	}
	if run.BuildFailed || (len(run.Failed) == 0 && stderr.Len() > 0) {
		run.BuildFailed = true
		run.BuildKey = buildKey(run.Output, run.Errors)
	}
	for _, t := range order {
		run.Keys[t.name] = keyLines(byTest[t])
	}
	return run, nil
}

// testPattern is the -run pattern and the packages that run tests.
func testPattern(tests []testFunc) (pattern string, dirs []string) {
	var names []string
	for _, t := range tests {
		dirs = append(dirs, "./"+t.Dir)
		names = append(names, t.Name)
	}
	slices.Sort(dirs)
	slices.Sort(names)
	return "^(" + strings.Join(slices.Compact(names), "|") + ")$", slices.Compact(dirs)
}

// redCommand is the command a learner types to see a red's failure.
func redCommand(tests []testFunc, flags []string) string {
	pattern, dirs := testPattern(tests)
	return strings.Join(slices.Concat([]string{"go", "test"}, flags, []string{"-run", "'" + pattern + "'"}, dirs), " ")
}

// buildKey is the line that says why a build failed: the first error, or
// else the first line that is not a package header.
func buildKey(output string, errs []compileError) string {
	if len(errs) > 0 {
		return errs[0].Line
	}
	for _, line := range strings.Split(output, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") && !strings.HasPrefix(line, "FAIL") {
			return line
		}
	}
	return ""
}

var (
	// noise are the lines of a failed test that do not say why it failed,
	// as normalize leaves them.
	noise = []*regexp.Regexp{
		regexp.MustCompile(`^=== (RUN|PAUSE|CONT|NAME)\b`),
		regexp.MustCompile(`^--- (FAIL|PASS|SKIP):`),
		regexp.MustCompile(`^[^\s:]+\.go:N:$`),           // the header of testify's message
		regexp.MustCompile(`^(Error Trace|Test):`),       // testify's trace, and the test's name again
		regexp.MustCompile(`^[^\s:]+\.go:N$`),            // a trace's further frames
		regexp.MustCompile(`^(FAIL|PASS|ok)(\s|$)`),      // the package's summary
		regexp.MustCompile(`^exit status \d+$`),          //
		regexp.MustCompile(`^coverage: |^testing: warn`), //
	}
	fileLine = regexp.MustCompile(`(?:[^\s:]*/)?([^/\s:]+\.go):\d+(?::\d+)?`)
	spaces   = regexp.MustCompile(`\s+`)
)

// normalize makes a line of output comparable with the same line from
// another run or another machine: space collapsed, and file:line:col
// reduced to the file's name, since line numbers move as code is written;
// a loopback port, which a test server draws anew on every run, is N too.
func normalize(line string) string {
	line = spaces.ReplaceAllString(strings.TrimSpace(line), " ")
	line = loopbackPort.ReplaceAllString(line, "127.0.0.1:N")
	return fileLine.ReplaceAllString(line, "$1:N")
}

var loopbackPort = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// keyLines picks the lines that say why a test failed: the first line that
// is not noise, and the one after it when the first ends in a colon
// (testify's "Error: Not equal:" is followed by what was expected).
func keyLines(lines []string) []string {
	var keys []string
	for _, line := range lines {
		n := normalize(line)
		if n == "" || slices.ContainsFunc(noise, func(re *regexp.Regexp) bool { return re.MatchString(n) }) {
			continue
		}
		keys = append(keys, n)
		if len(keys) == 2 || !strings.HasSuffix(n, ":") {
			break
		}
	}
	return keys
}

// goEnv is the environment of every go command the proof runs: each state
// is a module of its own, outside any workspace.
func goEnv() []string {
	return append(os.Environ(), "GOWORK=off")
}
