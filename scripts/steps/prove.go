package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"go/format"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Problem is one thing the proof found wrong, and where.
type Problem struct {
	Where string // "01-one step 2 red", or "path/README.md:12"
	Msg   string
}

func (p Problem) String() string { return p.Where + ": " + p.Msg }

// outputTail is how many lines of a failing command's output a problem
// quotes: enough for the first failures, short enough to read in CI.
const outputTail = 40

// StateResult is what the proof saw at one state of a series.
type StateResult struct {
	Step   int
	Change Change
	Title  string
	Status string // one line for the report
}

// Report is the proof of one chapter.
type Report struct {
	Chapter  string
	NoSeries bool
	Steps    int
	States   []StateResult
	Problems []Problem
}

// ProveOptions tune Prove.
type ProveOptions struct {
	Jobs  int  // states checked at once
	Write bool // rewrite the walkthrough's [step]:# blocks from the states and the runs
}

// Prove proves the series of each chapter under root that has one (all of
// them when names is empty): that it rebuilds the chapter, that each red's
// new tests fail for a reason of their own and fail as the walkthrough
// shows, that every green and refactor passes go vet and go test -race, and
// that the walkthrough shows every step. Chapters without a series are
// reported as such.
func Prove(ctx context.Context, root string, names []string, opt ProveOptions) ([]*Report, error) {
	chapters, err := Chapters(root)
	if err != nil {
		return nil, err
	}
	if len(names) > 0 {
		var picked []*Chapter
		for _, name := range names {
			ch, err := FindChapter(root, name)
			if err != nil {
				return nil, err
			}
			for _, c := range chapters {
				if c.Name == ch.Name {
					picked = append(picked, c)
				}
			}
		}
		chapters = picked
	}
	scratch, err := os.MkdirTemp("", "steps-prove-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(scratch)

	var reports []*Report
	var jobs []func()
	firstGreen := -1 // the index in jobs of the first green or refactor
	var walks []*walkthrough
	var mu sync.Mutex // guards the reports' Problems and the walkthroughs' reds while jobs run
	for i, ch := range chapters {
		report := &Report{Chapter: ch.Name}
		reports = append(reports, report)
		patches, err := LoadSeries(ch)
		if err != nil {
			report.Problems = append(report.Problems, Problem{Where: ch.Name, Msg: err.Error()})
			walks = append(walks, nil)
			continue
		}
		if patches == nil {
			report.NoSeries = true
			walks = append(walks, nil)
			continue
		}
		report.Steps = patches[len(patches)-1].Step
		w := &walkthrough{chapter: ch.Name, patches: patches, states: make(map[stateKey]string), reds: make(map[int]RedRun)}
		walks = append(walks, w)
		states, problems := buildStates(ctx, ch, patches, filepath.Join(scratch, fmt.Sprintf("%02d", i)))
		flags, err := RedFlags(filepath.Join(ch.Dir, "README.md"))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		report.Problems = append(report.Problems, problems...)
		report.States = make([]StateResult, len(states))
		for j, s := range states {
			if s.patch.Change == Red {
				s.flags = flags[s.patch.Step]
			}
			w.states[stateKey{s.patch.Step, s.patch.Change}] = s.dir
			report.States[j] = StateResult{Step: s.patch.Step, Change: s.patch.Change, Title: s.patch.Title}
			if s.patch.Change != Red && firstGreen < 0 {
				firstGreen = len(jobs)
			}
			jobs = append(jobs, func() {
				status, problems, red := checkState(ctx, ch, s)
				mu.Lock()
				defer mu.Unlock()
				report.States[j].Status = status
				report.Problems = append(report.Problems, problems...)
				if red != nil {
					w.reds[s.patch.Step] = *red
				}
			})
		}
	}
	if firstGreen >= 0 {
		// The first check of a green builds the standard library and the
		// dependencies for -race -trimpath; run alone, it builds them once
		// for every check after it, instead of once per job at the same time.
		jobs[firstGreen]()
		jobs = slices.Delete(jobs, firstGreen, firstGreen+1)
	}
	runAll(jobs, opt.Jobs)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, ch := range chapters {
		w := walks[i]
		if w == nil {
			continue
		}
		readme := filepath.Join(ch.Dir, "README.md")
		if _, err := os.Stat(readme); errors.Is(err, fs.ErrNotExist) {
			reports[i].Problems = append(reports[i].Problems, Problem{Where: ch.Name,
				Msg: "a chapter with a series needs its walkthrough, README.md"})
			continue
		}
		problems, err := CheckReadme(readme, *w, opt.Write)
		if err != nil {
			return nil, err
		}
		reports[i].Problems = append(reports[i].Problems, problems...)
	}
	return reports, nil
}

// runAll runs jobs, at most n at a time.
func runAll(jobs []func(), n int) {
	if n < 1 {
		n = 1
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, job := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			job()
		})
	}
	wg.Wait()
}

// state is one materialized state of a series.
type state struct {
	patch  Patch
	dir    string   // the chapter as it stands after patch, named as the chapter
	before string   // the state before patch
	flags  []string // a red's go test flags, from its failure block

	// chapter is the chapter's own folder when this is the last state and
	// it equals the chapter: its tests then run there, with the flags of
	// the README's command, so that they are the runs go test has cached
	// from that command instead of the same runs again.
	chapter string
}

// buildStates applies the series to the chapter before, one patch at a
// time, copying each state to its own folder under scratch, and compares
// the last state with the chapter.
func buildStates(ctx context.Context, ch *Chapter, patches []Patch, scratch string) ([]state, []Problem) {
	where := func(p Patch) string { return ch.Name + " " + p.Name() }
	work := filepath.Join(scratch, "work", ch.Name)
	if err := Base(ch, work); err != nil {
		return nil, []Problem{{Where: ch.Name, Msg: fmt.Sprintf("the state before the first step: %v", err)}}
	}
	before := filepath.Join(scratch, "base", ch.Name)
	if err := os.CopyFS(before, os.DirFS(work)); err != nil {
		return nil, []Problem{{Where: ch.Name, Msg: err.Error()}}
	}
	var states []state
	for _, p := range patches {
		if err := Apply(ctx, work, p); err != nil {
			return states, []Problem{{Where: where(p), Msg: strings.TrimPrefix(err.Error(), p.Name()+" ") +
				"; the series stops here (to carry a change forward, see go run ./scripts/steps branch)"}}
		}
		dir := filepath.Join(scratch, fmt.Sprintf("s%02d-%s", p.Step, p.Change), ch.Name)
		if err := os.CopyFS(dir, os.DirFS(work)); err != nil {
			return states, []Problem{{Where: where(p), Msg: err.Error()}}
		}
		states = append(states, state{patch: p, dir: dir, before: before})
		before = dir
	}
	drift, err := compareTrees(work, ch.Dir)
	if err != nil {
		return states, []Problem{{Where: ch.Name, Msg: err.Error()}}
	}
	if len(drift) > 0 {
		last := patches[len(patches)-1]
		return states, []Problem{{Where: ch.Name, Msg: fmt.Sprintf(
			"the series does not rebuild the chapter: after %s, %s", last.Name(), strings.Join(drift, "; "))}}
	}
	if last := &states[len(states)-1]; last.patch.Change != Red {
		last.chapter = ch.Dir
	}
	return states, nil
}

// compareTrees lists how the files of got differ from the chapter's code
// (its docs aside), by file.
func compareTrees(got, chapter string) ([]string, error) {
	gotFiles, err := codeFiles(got)
	if err != nil {
		return nil, err
	}
	wantFiles, err := codeFiles(chapter)
	if err != nil {
		return nil, err
	}
	var drift []string
	inChapter := make(map[string]bool)
	for _, f := range wantFiles {
		inChapter[f] = true
	}
	inSeries := make(map[string]bool)
	for _, f := range gotFiles {
		inSeries[f] = true
		if !inChapter[f] {
			drift = append(drift, f+" is in the series but not in the chapter")
		}
	}
	for _, f := range wantFiles {
		if !inSeries[f] {
			drift = append(drift, f+" is in the chapter but the series never makes it")
			continue
		}
		a, err := os.ReadFile(filepath.Join(got, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(filepath.Join(chapter, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(a, b) {
			drift = append(drift, f+" differs: "+firstDifference(string(a), string(b)))
		}
	}
	return drift, nil
}

// checkState checks one state: a red's new tests fail, for the step's own
// reason; a green or refactor is formatted and passes go vet and go test
// -race.
func checkState(ctx context.Context, ch *Chapter, s state) (status string, problems []Problem, red *RedRun) {
	where := ch.Name + " " + s.patch.Name()
	fail := func(format string, args ...any) {
		problems = append(problems, Problem{Where: where, Msg: fmt.Sprintf(format, args...)})
	}
	if s.patch.Change != Red {
		if unformatted := unformattedFiles(s.dir); len(unformatted) > 0 {
			fail("not gofmt-ed: %s", strings.Join(unformatted, ", "))
		}
		dir, checks := s.dir, [][]string{
			{"vet", "-trimpath", "./..."},
			{"test", "-race", "-trimpath", "-timeout", greenTimeout.String(), "./..."},
		}
		if s.chapter != "" {
			dir, checks = s.chapter, [][]string{{"vet", "./..."}, {"test", "-race", "./..."}}
		}
		for _, args := range checks {
			cmd := exec.CommandContext(ctx, "go", args...)
			cmd.Dir = dir
			cmd.Env = goEnv()
			out, err := cmd.CombinedOutput()
			if err != nil {
				fail("go %s fails; a %s must pass every test of the chapter:\n%s", args[0], s.patch.Change, tail(string(out), filepath.Dir(dir)))
				return "FAILS: go " + args[0], problems, nil
			}
		}
		return "go vet, go test -race: pass", problems, nil
	}

	tests, err := newTests(s.before, s.dir)
	if err != nil {
		fail("%v", err)
		return "cannot read its tests", problems, nil
	}
	if len(tests) == 0 {
		fail("adds or changes no test function; a red is the test that drives the green")
		return "NO NEW TEST", problems, nil
	}
	run, err := runRed(ctx, s.dir, ch.Module, tests, s.flags)
	if err != nil {
		fail("%v", err)
		return "did not run", problems, nil
	}
	for _, name := range run.Passed {
		fail("%s passes; a red's new tests must fail before its green is written", name)
	}
	touched := s.patch.Touched()
	for _, e := range run.Errors {
		if !slices.Contains(touched, e.File) {
			fail("fails to build because of %s, a file this change does not touch: %s; "+
				"the failure must come from what the step asks for, so make the change that breaks %s part of the red, or of an earlier step",
				e.File, strings.TrimSpace(e.Line), e.File)
			break
		}
	}
	switch {
	case len(run.Passed) > 0:
		status = "PASSES: " + strings.Join(run.Passed, ", ")
	case run.BuildFailed:
		status = "fails to build: " + strings.TrimSpace(run.BuildKey)
	default:
		var parts []string
		for _, name := range sortedKeys(run.Keys) {
			parts = append(parts, name+": "+strings.Join(run.Keys[name], " "))
		}
		status = "fails: " + strings.Join(parts, "; ")
	}
	return status, problems, &run
}

// unformattedFiles lists the Go files under dir that gofmt would change.
func unformattedFiles(dir string) []string {
	files, err := codeFiles(dir)
	if err != nil {
		return []string{err.Error()}
	}
	var bad []string
	for _, f := range files {
		if !strings.HasSuffix(f, ".go") || strings.Contains("/"+f, "/testdata/") {
			continue
		}
		src, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(f)))
		if err != nil {
			return []string{err.Error()}
		}
		formatted, err := format.Source(src)
		if err != nil || !bytes.Equal(formatted, src) {
			bad = append(bad, f)
		}
	}
	return bad
}

// tail is the last lines of a command's output, indented, with the scratch
// folder shown as "…/".
func tail(out, scratch string) string {
	out = strings.ReplaceAll(strings.TrimRight(out, "\n"), scratch+string(filepath.Separator), "…/")
	lines := strings.Split(out, "\n")
	if len(lines) > outputTail {
		lines = append([]string{"[…]"}, lines[len(lines)-outputTail:]...)
	}
	return "    " + strings.Join(lines, "\n    ")
}
