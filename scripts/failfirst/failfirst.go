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
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"golang.org/x/mod/modfile"
)

// Outcome is what happened to one test in one chapter.
type Outcome string

const (
	BuildFailed Outcome = "fails: build failed"
	Failed      Outcome = "fails: test failed"
	Passed      Outcome = "passes"
	NotRun      Outcome = "not run"
)

// Result is one new or changed test and what it did on both chapters.
type Result struct {
	File   string // relative to the chapter
	Test   string
	Before Outcome // on the earlier chapter: must fail
	After  Outcome // on its own chapter: must pass
}

// OK reports whether the test fails first and passes after.
func (r Result) OK() bool {
	return (r.Before == BuildFailed || r.Before == Failed) && r.After == Passed
}

var chapterName = regexp.MustCompile(`^[0-9]{2}-[a-z0-9-]+$`)

// Chapters lists the chapter folders under root (NN-name, with a go.mod), in
// order.
func Chapters(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var chapters []string
	for _, e := range entries {
		if e.IsDir() && chapterName.MatchString(e.Name()) {
			if _, err := os.Stat(filepath.Join(root, e.Name(), "go.mod")); err == nil {
				chapters = append(chapters, filepath.Join(root, e.Name()))
			}
		}
	}
	sort.Strings(chapters)
	return chapters, nil
}

// testFunc is one Test function's source, keyed by package folder and name.
type testFunc struct {
	dir, file, name, source string
}

// CheckChapter runs next's new and changed tests on prev and on next.
func CheckChapter(ctx context.Context, prev, next string) ([]Result, error) {
	prevModule, err := modulePath(prev)
	if err != nil {
		return nil, err
	}
	nextModule, err := modulePath(next)
	if err != nil {
		return nil, err
	}
	prevTests, err := testFuncs(prev, nil)
	if err != nil {
		return nil, err
	}
	// Compare with the earlier chapter's module path written in, so that an
	// import line alone does not count as a change.
	nextTests, err := testFuncs(next, strings.NewReplacer(nextModule, prevModule))
	if err != nil {
		return nil, err
	}
	old := make(map[string]string)
	for _, t := range prevTests {
		old[t.dir+"."+t.name] = t.source
	}
	var changed []testFunc
	for _, t := range nextTests {
		if source, ok := old[t.dir+"."+t.name]; !ok || source != t.source {
			changed = append(changed, t)
		}
	}
	if len(changed) == 0 {
		return nil, nil
	}

	// Each changed file is judged on its own copy of the earlier chapter, so a
	// file that cannot build there does not hide how its neighbours fare.
	var files []string
	byFile := make(map[string][]testFunc)
	for _, t := range changed {
		if byFile[t.file] == nil {
			files = append(files, t.file)
		}
		byFile[t.file] = append(byFile[t.file], t)
	}
	rewrite := strings.NewReplacer(nextModule, prevModule)
	before := make(map[string]Outcome)
	for _, file := range files {
		outcomes, err := runOnCopy(ctx, prev, filepath.Join(next, file), file, rewrite, byFile[file])
		if err != nil {
			return nil, err
		}
		maps.Copy(before, outcomes)
	}
	after, err := runTests(ctx, next, changed)
	if err != nil {
		return nil, err
	}
	results := make([]Result, 0, len(changed))
	for _, t := range changed {
		key := t.dir + "." + t.name
		results = append(results, Result{File: t.file, Test: t.name, Before: before[key], After: after[key]})
	}
	return results, nil
}

// runOnCopy copies chapter to a scratch folder, puts source (rewritten) at
// rel in it, and runs tests there.
func runOnCopy(ctx context.Context, chapter, source, rel string, rewrite *strings.Replacer, tests []testFunc) (map[string]Outcome, error) {
	scratch, err := os.MkdirTemp("", "failfirst-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)
	copied := filepath.Join(scratch, filepath.Base(chapter))
	if err := os.CopyFS(copied, os.DirFS(chapter)); err != nil {
		return nil, fmt.Errorf("copy %s: %w", chapter, err)
	}
	data, err := os.ReadFile(source)
	if err != nil {
		return nil, err
	}
	target := filepath.Join(copied, rel)
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(target, []byte(rewrite.Replace(string(data))), 0o644); err != nil {
		return nil, err
	}
	return runTests(ctx, copied, tests)
}

func modulePath(chapter string) (string, error) {
	data, err := os.ReadFile(filepath.Join(chapter, "go.mod"))
	if err != nil {
		return "", err
	}
	path := modfile.ModulePath(data)
	if path == "" {
		return "", fmt.Errorf("%s/go.mod names no module", chapter)
	}
	return path, nil
}

// testFuncs returns every TestXxx function in the chapter's _test.go files,
// with its source after rewrite (when not nil). testdata folders are skipped,
// as the go command skips them.
func testFuncs(chapter string, rewrite *strings.Replacer) ([]testFunc, error) {
	var funcs []testFunc
	err := filepath.WalkDir(chapter, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && p != chapter {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if rewrite != nil {
			data = []byte(rewrite.Replace(string(data)))
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, p, data, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(chapter, p)
		rel = filepath.ToSlash(rel)
		for _, decl := range file.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !isTestName(fn.Name.Name) {
				continue
			}
			start, end := fset.Position(fn.Pos()).Offset, fset.Position(fn.End()).Offset
			funcs = append(funcs, testFunc{dir: path.Dir(rel), file: rel, name: fn.Name.Name, source: string(data[start:end])})
		}
		return nil
	})
	return funcs, err
}

func isTestName(name string) bool {
	if !strings.HasPrefix(name, "Test") || name == "TestMain" {
		return false
	}
	rest := name[len("Test"):]
	return rest == "" || !(rest[0] >= 'a' && rest[0] <= 'z')
}

// testEvent is one line of go test -json.
type testEvent struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// runTests runs the given tests in chapter, one go test per package, and
// returns each test's outcome keyed by "dir.name".
func runTests(ctx context.Context, chapter string, tests []testFunc) (map[string]Outcome, error) {
	byDir := make(map[string][]string)
	for _, t := range tests {
		byDir[t.dir] = append(byDir[t.dir], t.name)
	}
	outcomes := make(map[string]Outcome)
	dirs := make([]string, 0, len(byDir))
	for dir := range byDir {
		dirs = append(dirs, dir)
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		names := byDir[dir]
		slices.Sort(names)
		pattern := "^(" + strings.Join(names, "|") + ")$"
		cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-json", "-run", pattern, "./"+dir)
		cmd.Dir = chapter
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		var out bytes.Buffer
		cmd.Stdout = &out
		cmd.Stderr = &out
		_ = cmd.Run() // failure is expected on the earlier chapter; the events say which
		seen := parseOutcomes(out.Bytes())
		for _, name := range names {
			outcome, ok := seen[name]
			switch {
			case ok:
			case bytes.Contains(out.Bytes(), []byte("build failed")) || bytes.Contains(out.Bytes(), []byte("setup failed")):
				outcome = BuildFailed
			default:
				outcome = NotRun
			}
			outcomes[dir+"."+name] = outcome
		}
	}
	return outcomes, nil
}

// parseOutcomes reads go test -json output: the pass or fail of each
// top-level test.
func parseOutcomes(output []byte) map[string]Outcome {
	seen := make(map[string]Outcome)
	for _, line := range bytes.Split(output, []byte("\n")) {
		var e testEvent
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil {
			continue
		}
		if e.Test == "" || strings.Contains(e.Test, "/") {
			continue
		}
		switch e.Action {
		case "pass":
			seen[e.Test] = Passed
		case "fail":
			seen[e.Test] = Failed
		}
	}
	return seen
}
