package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/modfile"
)

// Change is one of the changes a step is made of, in this order.
type Change string

const (
	Red      Change = "red"      // the test, and the failure it prints
	Green    Change = "green"    // the least code that makes it pass
	Refactor Change = "refactor" // optional: a better shape, every test still passing
)

// StepsDir is the folder of a chapter that holds its series.
const StepsDir = "steps"

// docs are the chapter files the series does not carry: the walkthrough
// is written about the series, and the series cannot hold itself.
var docs = []string{"README.md", "NOTES.md", StepsDir}

// isDoc reports whether rel (slash-separated, relative to a chapter) is a
// file the series does not carry.
func isDoc(rel string) bool {
	first, _, _ := strings.Cut(rel, "/")
	return slices.Contains(docs, first)
}

var chapterName = regexp.MustCompile(`^[0-9]{2}-[a-z0-9-]+$`)

// Chapter is one chapter folder.
type Chapter struct {
	Name   string // the folder name, "03-sse"
	Dir    string // the folder
	Module string // its module path
	Prev   *Chapter
}

// Chapters lists the chapter folders under root (NN-name, with a go.mod), in
// order, each linked to the one before it.
func Chapters(root string) ([]*Chapter, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	var chapters []*Chapter
	for _, e := range entries { // ReadDir sorts by name, which is chapter order
		if !e.IsDir() || !chapterName.MatchString(e.Name()) {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
			continue
		}
		module, err := modulePath(dir)
		if err != nil {
			return nil, err
		}
		ch := &Chapter{Name: e.Name(), Dir: dir, Module: module}
		if n := len(chapters); n > 0 {
			ch.Prev = chapters[n-1]
		}
		chapters = append(chapters, ch)
	}
	return chapters, nil
}

// FindChapter returns the chapter called name under root.
func FindChapter(root, name string) (*Chapter, error) {
	chapters, err := Chapters(root)
	if err != nil {
		return nil, err
	}
	name = strings.TrimSuffix(filepath.Base(name), "/")
	for _, ch := range chapters {
		if ch.Name == name {
			return ch, nil
		}
	}
	return nil, fmt.Errorf("no chapter %q under %s (a folder NN-name with a go.mod)", name, root)
}

func modulePath(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", err
	}
	path := modfile.ModulePath(data)
	if path == "" {
		return "", fmt.Errorf("%s/go.mod names no module", dir)
	}
	return path, nil
}

// Patch is one change of a step: a title, the why, and a diff in the form
// git diff writes, relative to the chapter folder.
type Patch struct {
	Step   int    // 1-based
	Slug   string // the step folder's name without its number
	Change Change //
	Title  string // the first line of the file
	Body   string // the lines after it, up to the diff
	Diff   string // from the first "diff --git" line to the end
	File   string // where it was read from
}

// Name is how messages name the change: "step 2 red".
func (p Patch) Name() string { return fmt.Sprintf("step %d %s", p.Step, p.Change) }

// Touched lists the files the diff changes, relative to the chapter.
func (p Patch) Touched() []string {
	var files []string
	for _, line := range strings.Split(p.Diff, "\n") {
		rest, ok := strings.CutPrefix(line, "diff --git ")
		if !ok {
			continue
		}
		// "a/x b/x": without renames both halves name the same file.
		if _, b, ok := strings.Cut(rest, " b/"); ok {
			files = append(files, b)
		}
	}
	return files
}

// Text is the patch file's content.
func (p Patch) Text() string {
	var b strings.Builder
	b.WriteString(p.Title + "\n")
	if p.Body != "" {
		b.WriteString("\n" + p.Body + "\n")
	}
	b.WriteString("\n" + p.Diff)
	return b.String()
}

// parsePatch splits a patch file into its message and its diff.
func parsePatch(text string) (title, body, diff string, err error) {
	at := -1
	if strings.HasPrefix(text, "diff --git ") {
		at = 0
	} else if i := strings.Index(text, "\ndiff --git "); i >= 0 {
		at = i + 1
	}
	if at < 0 {
		return "", "", "", errors.New("no diff in it (want a message, then git diff output)")
	}
	message := strings.TrimSpace(text[:at])
	title, body, _ = strings.Cut(message, "\n")
	if title == "" {
		return "", "", "", errors.New("no title: its first line says what the change does")
	}
	return title, strings.TrimSpace(body), text[at:], nil
}

// stepFolder is a step's folder name: its number, then a slug.
var stepFolder = regexp.MustCompile(`^([0-9]{2,})-([a-z0-9-]+)$`)

// LoadSeries reads a chapter's series, in order. A chapter without a steps
// folder has none: nil, nil.
func LoadSeries(ch *Chapter) ([]Patch, error) {
	dir := filepath.Join(ch.Dir, StepsDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var patches []Patch
	for i, e := range entries {
		m := stepFolder.FindStringSubmatch(e.Name())
		if !e.IsDir() || m == nil {
			return nil, fmt.Errorf("%s/%s: want only step folders NN-slug", dir, e.Name())
		}
		if n, _ := strconv.Atoi(m[1]); n != i+1 {
			return nil, fmt.Errorf("%s/%s: want step %d here: steps are numbered from 1 without gaps", dir, e.Name(), i+1)
		}
		files, err := os.ReadDir(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		have := make(map[Change]bool)
		for _, f := range files {
			change := Change(strings.TrimSuffix(f.Name(), ".patch"))
			if !slices.Contains([]Change{Red, Green, Refactor}, change) || !strings.HasSuffix(f.Name(), ".patch") {
				return nil, fmt.Errorf("%s/%s/%s: a step holds only red.patch, green.patch and refactor.patch", dir, e.Name(), f.Name())
			}
			have[change] = true
		}
		if !have[Red] || !have[Green] {
			return nil, fmt.Errorf("%s/%s: a step needs red.patch and green.patch", dir, e.Name())
		}
		for _, change := range []Change{Red, Green, Refactor} {
			if !have[change] {
				continue
			}
			file := filepath.Join(dir, e.Name(), string(change)+".patch")
			data, err := os.ReadFile(file)
			if err != nil {
				return nil, err
			}
			title, body, diff, err := parsePatch(string(data))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", file, err)
			}
			patches = append(patches, Patch{Step: i + 1, Slug: m[2], Change: change,
				Title: title, Body: body, Diff: diff, File: file})
		}
	}
	return patches, nil
}

// Base writes into dir the chapter as it stands before its first step: the
// chapter before it with this chapter's module path written in (its docs
// left out), or, for the first chapter, the empty module that go mod init
// makes.
func Base(ch *Chapter, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if ch.Prev == nil {
		goVersion, err := goDirective(ch.Dir)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "go.mod"), fmt.Appendf(nil, "module %s\n\ngo %s\n", ch.Module, goVersion), 0o644)
	}
	return copyCode(ch.Prev.Dir, dir, strings.NewReplacer(ch.Prev.Module, ch.Module))
}

func goDirective(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", err
	}
	f, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil {
		return "", fmt.Errorf("%s/go.mod: %w", dir, err)
	}
	if f.Go == nil {
		return "", fmt.Errorf("%s/go.mod has no go line", dir)
	}
	return f.Go.Version, nil
}

// copyCode copies the files of chapter folder from into to, all but the
// docs, with rewrite applied to their content (nil: as they are).
func copyCode(from, to string, rewrite *strings.Replacer) error {
	files, err := codeFiles(from)
	if err != nil {
		return err
	}
	for _, rel := range files {
		src := filepath.Join(from, filepath.FromSlash(rel))
		info, err := os.Stat(src)
		if err != nil {
			return err
		}
		data, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if rewrite != nil {
			data = []byte(rewrite.Replace(string(data)))
		}
		dst := filepath.Join(to, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(dst, data, info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}

// codeFiles lists the files of a chapter folder that the series carries,
// slash-separated and sorted.
func codeFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if isDoc(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			files = append(files, rel)
		}
		return nil
	})
	return files, err
}

// Apply applies p to the chapter copy in dir. The patch must apply exactly:
// a series that needs fuzz has drifted.
func Apply(ctx context.Context, dir string, p Patch) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "git", "apply", "--whitespace=nowarn", "-")
	cmd.Dir = abs
	// Outside a repository git apply works on the folder; inside one it would
	// take paths from the repository's top, so never look above dir.
	cmd.Env = append(os.Environ(), "GIT_CEILING_DIRECTORIES="+filepath.Dir(abs))
	cmd.Stdin = strings.NewReader(p.Diff)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s does not apply: %s", p.Name(), strings.TrimSpace(out.String()))
	}
	return nil
}

// Materialize writes into dir the chapter as it stands after the change
// named by step and change, and returns the patches applied.
func Materialize(ctx context.Context, ch *Chapter, step int, change Change, dir string) ([]Patch, error) {
	patches, err := LoadSeries(ch)
	if err != nil {
		return nil, err
	}
	if patches == nil {
		return nil, fmt.Errorf("%s has no series yet (no %s folder)", ch.Name, StepsDir)
	}
	end := slices.IndexFunc(patches, func(p Patch) bool { return p.Step == step && p.Change == change })
	if end < 0 {
		return nil, fmt.Errorf("%s has no step %d %s (%s)", ch.Name, step, change, describeSeries(patches))
	}
	if err := Base(ch, dir); err != nil {
		return nil, err
	}
	for _, p := range patches[:end+1] {
		if err := Apply(ctx, dir, p); err != nil {
			return nil, fmt.Errorf("%s %w", ch.Name, err)
		}
	}
	return patches[:end+1], nil
}

func describeSeries(patches []Patch) string {
	if len(patches) == 0 {
		return "no steps"
	}
	last := patches[len(patches)-1].Step
	return fmt.Sprintf("steps 1 to %d, each red and green, some with a refactor", last)
}
