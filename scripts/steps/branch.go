package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// baseSubject starts the message of a branch's first commit.
const baseSubject = "base: "

// slugWords is how many words of a red's title name its step's folder:
// enough to tell steps apart in a listing, few enough to read.
const slugWords = 5

// commitSubject is how a branch names each change: "03-sse step 4 red: title".
var commitSubject = regexp.MustCompile(`^([0-9]{2}-[a-z0-9-]+) step ([0-9]+) (red|green|refactor): (.+)$`)

// git runs git in dir with a fixed identity and no pager, and returns its
// standard output.
func git(ctx context.Context, dir string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-c", "core.quotepath=off", "-c", "commit.gpgsign=false"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=steps", "GIT_AUTHOR_EMAIL=steps@localhost",
		"GIT_COMMITTER_NAME=steps", "GIT_COMMITTER_EMAIL=steps@localhost",
		"GIT_CEILING_DIRECTORIES="+filepath.Dir(dir))
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Branch turns the series of the named chapters (consecutive, in order)
// into a git repository in dir, on a branch "steps": a first commit with
// the state before the first chapter's first step, then one commit per
// change. The whole branch uses the first chapter's module path, so that a
// change to an early step rebases through the later chapters too; Export
// writes each chapter's own path back. A named chapter without a series
// adds no commits: the place to write its first step.
func Branch(ctx context.Context, root, dir string, names []string) error {
	chapters, err := consecutive(root, names)
	if err != nil {
		return err
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s is not empty", dir)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := git(ctx, dir, nil, "init", "-q", "-b", "steps"); err != nil {
		return err
	}
	first := chapters[0]
	if err := Base(first, dir); err != nil {
		return err
	}
	subject := baseSubject + "an empty module, " + first.Module
	if first.Prev != nil {
		subject = fmt.Sprintf("%s%s as it stands, module %s", baseSubject, first.Prev.Name, first.Module)
	}
	if err := commitAll(ctx, dir, subject); err != nil {
		return err
	}
	for _, ch := range chapters {
		patches, err := LoadSeries(ch)
		if err != nil {
			return err
		}
		toBranch := strings.NewReplacer(ch.Module, first.Module)
		for _, p := range patches {
			p.Diff = toBranch.Replace(p.Diff)
			if err := Apply(ctx, dir, p); err != nil {
				return fmt.Errorf("%s %w", ch.Name, err)
			}
			message := fmt.Sprintf("%s %s: %s", ch.Name, p.Name(), p.Title)
			if p.Body != "" {
				message += "\n\n" + p.Body
			}
			if err := commitAll(ctx, dir, message); err != nil {
				return err
			}
		}
	}
	return nil
}

func commitAll(ctx context.Context, dir, message string) error {
	if _, err := git(ctx, dir, nil, "add", "-A"); err != nil {
		return err
	}
	_, err := git(ctx, dir, strings.NewReader(message), "commit", "-q", "--allow-empty", "--no-verify", "-F", "-")
	return err
}

// consecutive finds the named chapters and checks that they follow each
// other.
func consecutive(root string, names []string) ([]*Chapter, error) {
	if len(names) == 0 {
		return nil, errors.New("name the chapters, in order")
	}
	var chapters []*Chapter
	for i, name := range names {
		ch, err := FindChapter(root, name)
		if err != nil {
			return nil, err
		}
		if i > 0 && (ch.Prev == nil || ch.Prev.Name != chapters[i-1].Name) {
			return nil, fmt.Errorf("%s does not follow %s: name chapters that follow each other", ch.Name, chapters[i-1].Name)
		}
		chapters = append(chapters, ch)
	}
	return chapters, nil
}

// commit is one commit of a branch, as Export reads it.
type commit struct {
	hash, subject, body string
}

// ExportResult says what Export wrote for one chapter.
type ExportResult struct {
	Chapter     string
	Steps       int
	Renumbered  bool     // the commits' step numbers were not 1, 2, 3…: the README's [step]:# lines may need the new ones
	CodeChanged []string // chapter files the branch changed, added or removed
}

// Export writes a branch made by Branch (and since edited, rebased,
// extended) back into the chapters: each chapter's steps folder is written
// anew from its commits, and its code is made the state of its last
// commit. Step numbers come from the order of the commits.
func Export(ctx context.Context, root, dir string) ([]ExportResult, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	log, err := git(ctx, dir, nil, "log", "--reverse", "--format=%H%x00%s%x00%b%x1e", "HEAD")
	if err != nil {
		return nil, err
	}
	var commits []commit
	for _, record := range strings.Split(log, "\x1e") {
		fields := strings.SplitN(strings.TrimLeft(record, "\n"), "\x00", 3)
		if len(fields) == 3 {
			commits = append(commits, commit{fields[0], fields[1], strings.TrimSpace(fields[2])})
		}
	}
	if len(commits) == 0 || !strings.HasPrefix(commits[0].subject, baseSubject) {
		return nil, fmt.Errorf("%s: the branch does not start with a %q commit: make it with go run ./scripts/steps branch", dir, baseSubject)
	}
	branchModule, err := fileAt(ctx, dir, commits[0].hash, "go.mod")
	if err != nil {
		return nil, err
	}
	module := modulePathOf(branchModule)

	type chapterCommits struct {
		name    string
		commits []commit
		changes []Change
		titles  []string
		numbers []int
	}
	var order []*chapterCommits
	for _, c := range commits[1:] {
		m := commitSubject.FindStringSubmatch(c.subject)
		if m == nil {
			return nil, fmt.Errorf("commit %.12s %q: want the subject \"NN-chapter step N red|green|refactor: title\"", c.hash, c.subject)
		}
		if len(order) == 0 || order[len(order)-1].name != m[1] {
			order = append(order, &chapterCommits{name: m[1]})
		}
		cc := order[len(order)-1]
		n, _ := strconv.Atoi(m[2])
		cc.commits, cc.changes, cc.titles, cc.numbers = append(cc.commits, c), append(cc.changes, Change(m[3])), append(cc.titles, m[4]), append(cc.numbers, n)
	}

	var results []ExportResult
	for _, cc := range order {
		ch, err := FindChapter(root, cc.name)
		if err != nil {
			return nil, fmt.Errorf("commits for %s: %w (create %s/go.mod with its module line first)", cc.name, err, cc.name)
		}
		toChapter := strings.NewReplacer(module, ch.Module)
		result := ExportResult{Chapter: ch.Name}
		var patches []Patch
		step := 0
		for i, c := range cc.commits {
			change := cc.changes[i]
			prev := Change("")
			if i > 0 {
				prev = cc.changes[i-1]
			}
			switch {
			case change == Red && (prev == "" || prev == Green || prev == Refactor):
				step++
			case change == Green && prev == Red, change == Refactor && prev == Green:
			default:
				return nil, fmt.Errorf("commit %.12s %q: a step is red, green, then maybe refactor; this %s follows a %q", c.hash, c.subject, change, prev)
			}
			if cc.numbers[i] != step {
				result.Renumbered = true
			}
			diff, err := git(ctx, dir, nil, "diff-tree", "-p", "--no-color", "--no-ext-diff", "--no-textconv", "--no-renames",
				"--diff-algorithm=myers", "-U3", "--src-prefix=a/", "--dst-prefix=b/", c.hash+"^", c.hash)
			if err != nil {
				return nil, err
			}
			diff = stripIndexLines(diff)
			if diff == "" {
				return nil, fmt.Errorf("commit %.12s %q changes nothing", c.hash, c.subject)
			}
			if bad := diffLikeLine(c.body); bad != "" {
				return nil, fmt.Errorf("commit %.12s %q: its message has a line %q that reads as a diff; reword it", c.hash, c.subject, bad)
			}
			patches = append(patches, Patch{Step: step, Change: change, Title: toChapter.Replace(cc.titles[i]),
				Body: toChapter.Replace(c.body), Diff: toChapter.Replace(diff)})
		}
		if last := cc.changes[len(cc.changes)-1]; last == Red {
			return nil, fmt.Errorf("%s: the branch ends on a red; a step needs its green", ch.Name)
		}
		for i := range patches { // a step's folder is named after its red
			if patches[i].Change == Red {
				patches[i].Slug = slug(patches[i].Title)
			} else {
				patches[i].Slug = patches[i-1].Slug
			}
		}
		result.Steps = step
		if err := writeSeries(ch, patches); err != nil {
			return nil, err
		}
		last := cc.commits[len(cc.commits)-1].hash
		if result.CodeChanged, err = writeCode(ctx, dir, last, ch, toChapter); err != nil {
			return nil, err
		}
		results = append(results, result)
	}
	return results, nil
}

func fileAt(ctx context.Context, dir, hash, file string) (string, error) {
	return git(ctx, dir, nil, "show", hash+":"+file)
}

func modulePathOf(goMod string) string {
	for _, line := range strings.Split(goMod, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// indexLine is git's "index 1a2b3c4..5d6e7f8 100644": blob ids that would
// change in every later patch whenever an earlier one changes.
var indexLine = regexp.MustCompile(`(?m)^index [0-9a-f]+\.\.[0-9a-f]+( [0-7]+)?\n`)

func stripIndexLines(diff string) string { return indexLine.ReplaceAllString(diff, "") }

// diffLikeLine returns a line of a message that git apply could take for
// part of a diff.
func diffLikeLine(message string) string {
	for _, line := range strings.Split(message, "\n") {
		for _, prefix := range []string{"diff ", "--- ", "+++ ", "@@ ", "Index: "} {
			if strings.HasPrefix(line, prefix) {
				return line
			}
		}
	}
	return ""
}

var notSlug = regexp.MustCompile(`[^a-z0-9]+`)

// slug names a step's folder from its title: its first words, lower case.
func slug(title string) string {
	words := strings.Fields(notSlug.ReplaceAllString(strings.ToLower(title), " "))
	if len(words) > slugWords {
		words = words[:slugWords]
	}
	if len(words) == 0 {
		return "step"
	}
	return strings.Join(words, "-")
}

// writeSeries replaces a chapter's steps folder with patches.
func writeSeries(ch *Chapter, patches []Patch) error {
	dir := filepath.Join(ch.Dir, StepsDir)
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	for _, p := range patches {
		folder := filepath.Join(dir, fmt.Sprintf("%02d-%s", p.Step, p.Slug))
		if err := os.MkdirAll(folder, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(folder, string(p.Change)+".patch"), []byte(p.Text()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeCode makes the chapter's code (its docs aside) the tree of commit
// hash, with rewrite applied, and lists the files that changed.
func writeCode(ctx context.Context, dir, hash string, ch *Chapter, rewrite *strings.Replacer) ([]string, error) {
	archive, err := git(ctx, dir, nil, "archive", "--format=tar", hash)
	if err != nil {
		return nil, err
	}
	kept := make(map[string]bool)
	var changed []string
	r := tar.NewReader(strings.NewReader(archive))
	for {
		h, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if h.Typeflag != tar.TypeReg || isDoc(h.Name) {
			continue
		}
		data, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		data = []byte(rewrite.Replace(string(data)))
		kept[h.Name] = true
		target := filepath.Join(ch.Dir, filepath.FromSlash(path.Clean(h.Name)))
		if old, err := os.ReadFile(target); err == nil && bytes.Equal(old, data) {
			continue
		}
		changed = append(changed, h.Name)
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(target, data, fs.FileMode(h.Mode).Perm()); err != nil {
			return nil, err
		}
	}
	files, err := codeFiles(ch.Dir)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		if !kept[f] {
			changed = append(changed, f+" (removed)")
			if err := os.Remove(filepath.Join(ch.Dir, filepath.FromSlash(f))); err != nil {
				return nil, err
			}
			// git keeps no empty folders, and neither does a chapter.
			for d := filepath.Dir(filepath.Join(ch.Dir, filepath.FromSlash(f))); d != ch.Dir; d = filepath.Dir(d) {
				if os.Remove(d) != nil { // not empty: stop
					break
				}
			}
		}
	}
	return changed, nil
}
