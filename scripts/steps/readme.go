package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// stepLine marks a code block of a walkthrough as a piece of a step's state:
//
//	[step]:# (2 red calc/calc_test.go /func TestAbs/ /^}/)   a region of a file, as it stands after step 2's red
//	[step]:# (2 green diff)                                   the green change of step 2, as a diff
//	[step]:# (2 green diff calc/calc.go)                      the part of it that changes calc/calc.go
//	[step]:# (2 red failure)                                  what the red's new tests print
//	[step]:# (2 red failure -timeout 5s)                      … when run with these go test flags
//
// Like embedmd's directive, it is a Markdown link definition: invisible
// once rendered.
var stepLine = regexp.MustCompile(`^\[step\]:#\s*\((.*)\)\s*$`)

// intermediateLine is the snippet check's mark for code that no longer
// exists; a chapter with a series has every state, so it needs none.
var intermediateLine = regexp.MustCompile(`^<!--\s*intermediate:`)

// Kinds of block a [step]:# directive names.
const (
	kindRegion  = "region"
	kindDiff    = "diff"
	kindFailure = "failure"
)

// directive is a parsed [step]:# line.
type directive struct {
	Step     int
	Change   Change
	Kind     string   // kindRegion, kindDiff or kindFailure
	File     string   // kindRegion: the file, relative to the chapter
	Patterns []string // kindRegion: start and end regexps, "$" for the end of the file
	Files    []string // kindDiff: only these files' parts of the diff
	Flags    []string // kindFailure: go test flags the red runs with, "-timeout 5s"
}

func parseDirective(args string) (directive, error) {
	fields := strings.Fields(args)
	if len(fields) < 3 {
		return directive{}, fmt.Errorf("want [step]:# (N red|green|refactor FILE [/start/ [/end/]] | diff [FILE...] | failure), got (%s)", args)
	}
	step, err := strconv.Atoi(fields[0])
	if err != nil || step < 1 {
		return directive{}, fmt.Errorf("step %q is not a step number", fields[0])
	}
	d := directive{Step: step, Change: Change(fields[1])}
	if !slices.Contains([]Change{Red, Green, Refactor}, d.Change) {
		return directive{}, fmt.Errorf("%q is not red, green or refactor", fields[1])
	}
	switch fields[2] {
	case "failure":
		if d.Change != Red || (len(fields) > 3 && !strings.HasPrefix(fields[3], "-")) {
			return directive{}, fmt.Errorf("a failure is shown as [step]:# (N red failure [GO TEST FLAGS])")
		}
		d.Kind, d.Flags = kindFailure, fields[3:]
	case "diff":
		d.Kind, d.Files = kindDiff, fields[3:]
	default:
		d.Kind = kindRegion
		rest := strings.TrimSpace(args)
		for range 2 { // past the step number and the change
			rest = strings.TrimSpace(rest[strings.IndexAny(rest, " \t"):])
		}
		d.File, rest, _ = strings.Cut(rest, " ")
		if d.Patterns, err = parsePatterns(strings.TrimSpace(rest)); err != nil {
			return directive{}, err
		}
	}
	return d, nil
}

// RedFlags reads the go test flags that a walkthrough's failure blocks give
// each red, by step. Malformed lines are left to CheckReadme to report.
func RedFlags(path string) (map[int][]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	flags := make(map[int][]string)
	for _, line := range strings.Split(string(data), "\n") {
		if m := stepLine.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			if d, err := parseDirective(m[1]); err == nil && d.Kind == kindFailure && len(d.Flags) > 0 {
				flags[d.Step] = d.Flags
			}
		}
	}
	return flags, nil
}

// parsePatterns splits "/start/ /end/" (either may be absent; the end may be
// $), as embedmd does.
func parsePatterns(rest string) ([]string, error) {
	var patterns []string
	for rest != "" {
		if rest == "$" {
			patterns = append(patterns, "$")
			break
		}
		if rest[0] != '/' {
			return nil, fmt.Errorf("want /regexp/, got %q", rest)
		}
		var re strings.Builder
		i := 1
		for ; i < len(rest) && rest[i] != '/'; i++ {
			if rest[i] == '\\' && i+1 < len(rest) && rest[i+1] == '/' {
				i++
			}
			re.WriteByte(rest[i])
		}
		if i == len(rest) {
			return nil, fmt.Errorf("unterminated regexp in %q", rest)
		}
		patterns = append(patterns, re.String())
		rest = strings.TrimSpace(rest[i+1:])
	}
	if len(patterns) > 2 {
		return nil, fmt.Errorf("at most a start and an end regexp")
	}
	return patterns, nil
}

// region returns the part of content that patterns name: from the first
// match of the start to the end of the first match of the end after it.
func region(content string, patterns []string) (string, error) {
	if len(patterns) == 0 {
		return content, nil
	}
	start, err := regexp.Compile("(?m)" + patterns[0])
	if err != nil {
		return "", fmt.Errorf("start regexp /%s/: %w", patterns[0], err)
	}
	loc := start.FindStringIndex(content)
	if loc == nil {
		return "", fmt.Errorf("start /%s/ not found", patterns[0])
	}
	switch {
	case len(patterns) == 1:
		return withNewline(content[loc[0]:loc[1]]), nil
	case patterns[1] == "$":
		return content[loc[0]:], nil
	}
	end, err := regexp.Compile("(?m)" + patterns[1])
	if err != nil {
		return "", fmt.Errorf("end regexp /%s/: %w", patterns[1], err)
	}
	endLoc := end.FindStringIndex(content[loc[1]:])
	if endLoc == nil {
		return "", fmt.Errorf("end /%s/ not found after /%s/", patterns[1], patterns[0])
	}
	return withNewline(content[loc[0] : loc[1]+endLoc[1]]), nil
}

func withNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// diffSections splits a diff into its files' parts, keyed by the file.
func diffSections(diff string) (files []string, sections map[string]string) {
	sections = make(map[string]string)
	var cur string
	for _, line := range strings.SplitAfter(diff, "\n") {
		if rest, ok := strings.CutPrefix(line, "diff --git "); ok {
			_, cur, _ = strings.Cut(strings.TrimSpace(rest), " b/")
			files = append(files, cur)
		}
		if cur != "" {
			sections[cur] += line
		}
	}
	return files, sections
}

// block is one fenced code block of a Markdown file.
type block struct {
	line      int    // 1-based line of the opening fence
	lang      string // the info string's first word
	marker    string // the nearest non-blank line before the fence
	bodyStart int    // index into lines of the first body line
	bodyEnd   int    // index into lines of the closing fence
	body      string
}

// parseBlocks finds the fenced blocks (``` or ~~~, three or more) in lines.
func parseBlocks(lines []string) ([]block, error) {
	var blocks []block
	marker := ""
	for i := 0; i < len(lines); i++ {
		text := strings.TrimRight(lines[i], "\r\n")
		fence, info, ok := openingFence(text)
		if !ok {
			if strings.TrimSpace(text) != "" {
				marker = strings.TrimSpace(text)
			}
			continue
		}
		b := block{line: i + 1, marker: marker, bodyStart: i + 1}
		if fields := strings.Fields(info); len(fields) > 0 {
			b.lang = fields[0]
		}
		end := slices.IndexFunc(lines[i+1:], func(l string) bool { return closes(strings.TrimRight(l, "\r\n"), fence) })
		if end < 0 {
			return nil, fmt.Errorf("line %d: code block is never closed", i+1)
		}
		end += i + 1
		b.bodyEnd = end
		b.body = strings.Join(lines[i+1:end], "")
		blocks = append(blocks, b)
		i = end
		marker = ""
	}
	return blocks, nil
}

func openingFence(line string) (fence, info string, ok bool) {
	trimmed := strings.TrimLeft(line, " ")
	if len(line)-len(trimmed) > 3 {
		return "", "", false
	}
	for _, c := range []byte{'`', '~'} {
		n := 0
		for n < len(trimmed) && trimmed[n] == c {
			n++
		}
		if n >= 3 {
			return trimmed[:n], strings.TrimSpace(trimmed[n:]), true
		}
	}
	return "", "", false
}

func closes(line, fence string) bool {
	trimmed := strings.TrimSpace(line)
	return strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == ""
}

// stateKey names one state of a series.
type stateKey struct {
	Step   int
	Change Change
}

// walkthrough is what the README check needs of a proven series.
type walkthrough struct {
	chapter string
	patches []Patch
	states  map[stateKey]string // each state's folder
	reds    map[int]RedRun      // each red's run, where it ran
}

// CheckReadme checks the walkthrough at path against the series: every
// [step]:# block against the state it names, every red's shown failure
// against the real one, and that the walkthrough shows each step's test and
// every line of code the series adds, in order. With write, blocks are
// rewritten from the states and the runs, and the file is saved.
func CheckReadme(path string, w walkthrough, write bool) ([]Problem, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	lines := strings.SplitAfter(string(data), "\n")
	blocks, err := parseBlocks(lines)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var problems []Problem
	at := func(line int, format string, args ...any) {
		problems = append(problems, Problem{Where: fmt.Sprintf("%s:%d", path, line), Msg: fmt.Sprintf(format, args...)})
	}
	steps := make(map[int]bool)
	byKey := make(map[stateKey]Patch)
	for _, p := range w.patches {
		steps[p.Step] = true
		byKey[stateKey{p.Step, p.Change}] = p
	}

	shown := make(map[int]map[string]bool) // per step: the lines its blocks show
	showsTest := make(map[int]bool)
	showsFailure := make(map[int]bool)
	lastStep, lastStepAt := 0, 0
	type rewrite struct {
		b    block
		body string
	}
	var rewrites []rewrite
	for _, b := range blocks {
		m := stepLine.FindStringSubmatch(b.marker)
		if m == nil {
			if b.lang == "go" || b.lang == "diff" || intermediateLine.MatchString(b.marker) {
				at(b.line, "in a chapter with a series, code blocks show the code as it stood: "+
					"mark this one [step]:# (N red|green|refactor FILE /start/ /end/) or [step]:# (N CHANGE diff)")
			}
			continue
		}
		d, err := parseDirective(m[1])
		if err != nil {
			at(b.line, "%v", err)
			continue
		}
		p, ok := byKey[stateKey{d.Step, d.Change}]
		if !ok {
			at(b.line, "%s has no step %d %s", w.chapter, d.Step, d.Change)
			continue
		}
		if d.Step < lastStep {
			at(b.line, "a block of step %d after one of step %d (line %d): show the steps in the order they are built", d.Step, lastStep, lastStepAt)
		}
		lastStep, lastStepAt = d.Step, b.line
		if shown[d.Step] == nil {
			shown[d.Step] = make(map[string]bool)
		}
		var want string
		switch d.Kind {
		case kindFailure:
			showsFailure[d.Step] = true
			run, ok := w.reds[d.Step]
			if !ok || len(run.Passed) > 0 {
				continue // the red did not run, or passed: the proof says so already
			}
			differs := compareFailure(b.body, run)
			for _, msg := range differs {
				at(b.line, "%s: %s", p.Name(), msg)
			}
			if write {
				if len(differs) > 0 {
					rewrites = append(rewrites, rewrite{b, trimOutput(run.Output)})
				} else if body := refreshNumbers(b.body, run.Output); body != b.body {
					rewrites = append(rewrites, rewrite{b, body})
				}
			}
			continue
		case kindDiff:
			files, sections := diffSections(p.Diff)
			if len(d.Files) == 0 {
				d.Files = files
			}
			for _, f := range d.Files {
				section, ok := sections[f]
				if !ok {
					at(b.line, "%s does not change %s", p.Name(), f)
					continue
				}
				want += section
			}
			if d.Change == Red {
				showsTest[d.Step] = true
			}
			for _, line := range strings.Split(want, "\n") {
				if strings.HasPrefix(line, "+") || strings.HasPrefix(line, " ") {
					shown[d.Step][line[1:]] = true
				}
			}
		case kindRegion:
			content, err := os.ReadFile(filepath.Join(w.states[stateKey{d.Step, d.Change}], filepath.FromSlash(d.File)))
			if err != nil {
				at(b.line, "%s has no file %s", p.Name(), d.File)
				continue
			}
			if want, err = region(string(content), d.Patterns); err != nil {
				at(b.line, "%s in %s as it stands after %s", err, d.File, p.Name())
				continue
			}
			if strings.HasSuffix(d.File, "_test.go") {
				showsTest[d.Step] = true
			}
			for _, line := range strings.Split(want, "\n") {
				shown[d.Step][line] = true
			}
		}
		if want != b.body {
			if write {
				rewrites = append(rewrites, rewrite{b, want})
				continue
			}
			at(b.line, "block drifted from %s (%s): %s", p.Name(), strings.TrimSpace(m[1]), firstDifference(want, b.body))
		}
	}

	for step := 1; steps[step]; step++ {
		where := fmt.Sprintf("%s step %d", path, step)
		if !showsTest[step] {
			problems = append(problems, Problem{Where: where, Msg: fmt.Sprintf(
				"the walkthrough does not show the step's test: add [step]:# (%d red FILE_test.go /func Test/ /^}/) or [step]:# (%d red diff)", step, step)})
		}
		if !showsFailure[step] {
			problems = append(problems, Problem{Where: where, Msg: fmt.Sprintf(
				"the walkthrough does not show the red's failure: add a text block marked [step]:# (%d red failure)", step)})
		}
		if missing := unshown(w.patches, step, shown[step]); len(missing) > 0 {
			problems = append(problems, Problem{Where: where, Msg: fmt.Sprintf(
				"the walkthrough does not show %d line(s) of code the step adds, first %s: embed the region that holds them "+
					"([step]:# (%d green FILE /start/ /end/)) or the change ([step]:# (%d green diff))", len(missing), missing[0], step, step)})
		}
	}

	if write && len(rewrites) > 0 {
		for i := len(rewrites) - 1; i >= 0; i-- { // from the end, so earlier indexes stay valid
			r := rewrites[i]
			lines = slices.Concat(lines[:r.b.bodyStart], splitLines(r.body), lines[r.b.bodyEnd:])
		}
		if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644); err != nil {
			return problems, err
		}
	}
	return problems, nil
}

// unshown lists the lines of non-test Go code that step's changes add and
// that no block of the step shows, as "file: `line`".
func unshown(patches []Patch, step int, shown map[string]bool) []string {
	var missing []string
	for _, p := range patches {
		if p.Step != step {
			continue
		}
		files, sections := diffSections(p.Diff)
		for _, f := range files {
			if !strings.HasSuffix(f, ".go") || strings.HasSuffix(f, "_test.go") {
				continue
			}
			for _, line := range strings.Split(sections[f], "\n") {
				added, ok := strings.CutPrefix(line, "+")
				if !ok || strings.HasPrefix(line, "+++ ") || strings.TrimSpace(added) == "" || shown[added] {
					continue
				}
				missing = append(missing, fmt.Sprintf("%s: `%s`", f, strings.TrimSpace(added)))
			}
		}
	}
	return missing
}

// failName finds the tests a shown failure names.
var failName = regexp.MustCompile(`^\s*--- FAIL: (\S+)`)

// compareFailure compares a shown failure with the real run: the tests it
// names, and the lines that say why each failed (or why the build did).
func compareFailure(shown string, run RedRun) []string {
	var have []string
	var names []string
	for _, line := range strings.Split(shown, "\n") {
		have = append(have, normalize(line))
		if m := failName.FindStringSubmatch(line); m != nil {
			names = append(names, m[1])
		}
	}
	var differs []string
	if run.BuildFailed {
		// A package that builds may fail its tests beside one that does
		// not: those failures are real, and shown as the run shows them.
		for _, name := range names {
			if !run.Failed[name] {
				differs = append(differs, fmt.Sprintf("the README shows %s failing, but the real run does not build", name))
				break
			}
		}
		if !containsInOrder(have, []string{normalize(run.BuildKey)}) {
			differs = append(differs, fmt.Sprintf("the README does not show the real build failure, which begins %q", run.BuildKey))
		}
		return differs
	}
	if len(names) == 0 {
		differs = append(differs, "the README shows no --- FAIL line; the real run fails "+strings.Join(sortedKeys(run.Keys), ", "))
	}
	for _, name := range names {
		if !run.Failed[name] {
			differs = append(differs, fmt.Sprintf("the README shows %s failing, but in the real run it does not fail", name))
			continue
		}
		if keys, top := run.Keys[name]; top && !containsInOrder(have, keys) {
			differs = append(differs, fmt.Sprintf("the README does not show why %s fails in the real run: %q", name, strings.Join(keys, " / ")))
		}
	}
	return differs
}

// containsInOrder reports whether every line of want appears in have, in
// order. A "…" in a line of have stands for any text, so that a README can
// show a reason whose measured part differs in every run ("heap grew by …").
func containsInOrder(have, want []string) bool {
	i := 0
	for _, line := range have {
		if i < len(want) && matchesShown(line, want[i]) {
			i++
		}
	}
	return i == len(want)
}

// matchesShown reports whether a line of real output matches a line as a
// README shows it, where each "…" stands for any text.
func matchesShown(shown, real string) bool {
	if !strings.Contains(shown, "…") {
		return shown == real
	}
	parts := strings.Split(shown, "…")
	pattern := make([]string, len(parts))
	for i, part := range parts {
		pattern[i] = regexp.QuoteMeta(part)
	}
	return regexp.MustCompile("^" + strings.Join(pattern, ".*") + "$").MatchString(real)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// refreshNumbers replaces each line of shown that is a line of output but
// for its file:line numbers by that line of output: the numbers a README
// shows come from the real run.
func refreshNumbers(shown, output string) string {
	real := make(map[string]string)
	for _, line := range strings.Split(output, "\n") {
		if n := normalize(line); n != "" {
			if _, dup := real[n]; !dup {
				real[n] = line
			}
		}
	}
	lines := strings.Split(shown, "\n")
	for i, line := range lines {
		if r, ok := real[normalize(line)]; ok && fileLine.MatchString(line) {
			lines[i] = r
		}
	}
	return strings.Join(lines, "\n")
}

// trimOutput is a run's output as a README shows it by default.
func trimOutput(output string) string {
	return strings.TrimRight(output, "\n") + "\n"
}

// firstDifference says where two texts first differ, by line.
func firstDifference(want, got string) string {
	w, g := splitLines(want), splitLines(got)
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d of the block is %q, the code has %q (go run ./scripts/steps prove -w rewrites it)",
				i+1, strings.TrimRight(gl, "\n"), strings.TrimRight(wl, "\n"))
		}
	}
	return "they differ"
}

// splitLines splits text after each newline, with no empty last element.
func splitLines(text string) []string {
	lines := strings.SplitAfter(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}
