package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readTree returns every file under dir by its slash path.
func readTree(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	files := make(map[string]string)
	require.NoError(tb, filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(data)
		return nil
	}))
	return files
}

// gitIn runs git in a branch made by Branch, as a contributor would.
func gitIn(tb testing.TB, dir string, env []string, args ...string) string {
	tb.Helper()
	cmd := exec.CommandContext(tb.Context(), "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append([]string{"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t", "GIT_EDITOR=true"}, env...)...)
	out, err := cmd.CombinedOutput()
	require.NoError(tb, err, "git %s:\n%s", strings.Join(args, " "), out)
	return string(out)
}

func TestBranch_MakesOneCommitPerChangeInTheFirstChaptersModule(t *testing.T) {
	root := fixture(t, "")
	dir := filepath.Join(t.TempDir(), "branch")

	require.NoError(t, Branch(t.Context(), root, dir, []string{"01-one", "02-two"}))

	log := gitIn(t, dir, nil, "log", "--reverse", "--format=%s")
	assert.Equal(t, `base: an empty module, realtime/01-one
01-one step 1 red: Add sums two numbers
01-one step 1 green: Add returns a + b
01-one step 2 red: Abs of a negative number is positive
01-one step 2 green: Abs negates a negative number
01-one step 2 refactor: Abs is the larger of x and -x
02-two step 1 red: Sub takes one number from another
02-two step 1 green: Sub adds the opposite
`, log)
	goMod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	require.NoError(t, err)
	assert.Equal(t, "module realtime/01-one\n\ngo 1.26.0\n", string(goMod), "one module path through every chapter, so a fix rebases through all of them")
}

func TestExport_WritesBackExactlyWhatBranchRead(t *testing.T) {
	root := fixture(t, "")
	before := readTree(t, root)
	dir := filepath.Join(t.TempDir(), "branch")
	require.NoError(t, Branch(t.Context(), root, dir, []string{"01-one", "02-two"}))

	results, err := Export(t.Context(), root, dir)

	require.NoError(t, err)
	assert.Equal(t, []ExportResult{{Chapter: "01-one", Steps: 2}, {Chapter: "02-two", Steps: 1}}, results)
	if diff := cmp.Diff(before, readTree(t, root)); diff != "" {
		t.Errorf("fixture mismatch after a round trip (-want +got):\n%s", diff)
	}
}

func TestExport_CarriesAFixOfAnEarlyStepThroughEveryLaterStepAndChapter(t *testing.T) {
	t.Parallel()
	root := fixture(t, "")
	dir := filepath.Join(t.TempDir(), "branch")
	require.NoError(t, Branch(t.Context(), root, dir, []string{"01-one", "02-two"}))
	greenOfStep1 := strings.TrimSpace(gitIn(t, dir, nil, "log", "--format=%H", "--grep", "^01-one step 1 green", "HEAD"))

	// The documented workflow: commit the fix on top, fold it into the step
	// that introduced the code, let git carry it through the rest.
	calc := filepath.Join(dir, "calc", "calc.go")
	data, err := os.ReadFile(calc)
	require.NoError(t, err)
	fixed := strings.Replace(string(data), "// Add returns the sum of a and b.", "// Add returns a plus b.", 1)
	require.NotEqual(t, string(data), fixed)
	require.NoError(t, os.WriteFile(calc, []byte(fixed), 0o644))
	gitIn(t, dir, nil, "commit", "-qam", "fixup! "+greenOfStep1)
	gitIn(t, dir, []string{"GIT_SEQUENCE_EDITOR=true"}, "rebase", "-q", "-i", "--autosquash", "--root")

	results, err := Export(t.Context(), root, dir)

	require.NoError(t, err)
	assert.Equal(t, []ExportResult{
		{Chapter: "01-one", Steps: 2, CodeChanged: []string{"calc/calc.go"}},
		{Chapter: "02-two", Steps: 1, CodeChanged: []string{"calc/calc.go"}},
	}, results)
	patch, err := os.ReadFile(filepath.Join(root, "01-one", StepsDir, "01-add-sums-two-numbers", "green.patch"))
	require.NoError(t, err)
	assert.Contains(t, string(patch), "+// Add returns a plus b.\n", "the fix lands in the step that wrote the line")
	for _, chapter := range []string{"01-one", "02-two"} {
		code, err := os.ReadFile(filepath.Join(root, chapter, "calc", "calc.go"))
		require.NoError(t, err)
		assert.Contains(t, string(code), "// Add returns a plus b.", chapter)
	}

	t.Run("the walkthrough shows the old line until prove -w refreshes it, and then the proof passes", func(t *testing.T) {
		reports, err := Prove(t.Context(), root, nil, ProveOptions{Jobs: 2})
		require.NoError(t, err)
		got := problems(root, reports)
		require.Len(t, got, 1)
		assert.Contains(t, got[0], "ROOT/01-one/README.md:30: block drifted from step 1 green (1 green diff)")

		reports, err = Prove(t.Context(), root, nil, ProveOptions{Jobs: 2, Write: true})
		require.NoError(t, err)
		assert.Empty(t, problems(root, reports), "-w reports only what it could not rewrite")
	})
}

func TestExport_RejectsABranchWhoseChangesAreOutOfOrder(t *testing.T) {
	root := fixture(t, "")
	dir := filepath.Join(t.TempDir(), "branch")
	require.NoError(t, Branch(t.Context(), root, dir, []string{"02-two"}))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "calc", "mul.go"), []byte("package calc\n"), 0o644))
	gitIn(t, dir, nil, "add", "-A")
	gitIn(t, dir, nil, "commit", "-qm", "02-two step 2 green: Mul without a test")

	_, err := Export(t.Context(), root, dir)

	require.Error(t, err)
	assert.Contains(t, err.Error(), `"02-two step 2 green: Mul without a test": a step is red, green, then maybe refactor; this green follows a "green"`)
}

func TestExport_NumbersStepsByTheirOrder(t *testing.T) {
	root := fixture(t, "")
	dir := filepath.Join(t.TempDir(), "branch")
	require.NoError(t, Branch(t.Context(), root, dir, []string{"02-two"}))
	// A new first step, put before the old one with a rebase: its number in
	// the message is a guess, and so is the old step's.
	base := strings.TrimSpace(gitIn(t, dir, nil, "rev-list", "--max-parents=0", "HEAD"))
	gitIn(t, dir, nil, "checkout", "-q", "-b", "new", base)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "calc", "neg_test.go"), []byte(
		"package calc\n\nimport \"testing\"\n\nfunc TestNeg(t *testing.T) {\n\tif Neg(1) != -1 {\n\t\tt.Error(\"Neg(1) != -1\")\n\t}\n}\n"), 0o644))
	gitIn(t, dir, nil, "add", "-A")
	gitIn(t, dir, nil, "commit", "-qm", "02-two step 7 red: Neg")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "calc", "neg.go"), []byte("package calc\n\n// Neg is -x.\nfunc Neg(x int) int { return -x }\n"), 0o644))
	gitIn(t, dir, nil, "add", "-A")
	gitIn(t, dir, nil, "commit", "-qm", "02-two step 7 green: Neg")
	gitIn(t, dir, nil, "cherry-pick", "steps~1", "steps")

	results, err := Export(t.Context(), root, dir)

	require.NoError(t, err)
	assert.Equal(t, []ExportResult{{Chapter: "02-two", Steps: 2, Renumbered: true, CodeChanged: []string{"calc/neg.go", "calc/neg_test.go"}}}, results)
	var stdout bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"steps", "-root", root, "list", "02-two"}, &stdout, &stdout))
	assert.Equal(t, ` 1 red      Neg
 1 green    Neg
 2 red      Sub takes one number from another
 2 green    Sub adds the opposite
`, stdout.String())
}

func TestState_WritesARunnableFolderForAnyChange(t *testing.T) {
	t.Parallel()
	root := fixture(t, "")

	t.Run("the red of a later chapter is the chapter before, its module path, and the red", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "here")
		var stdout bytes.Buffer
		require.NoError(t, run(t.Context(), []string{"steps", "-root", root, "state", "02-two", "1", "red", dir}, &stdout, &stdout))

		got := readTree(t, dir)
		want := readTree(t, filepath.Join(root, "01-one"))
		for _, doc := range []string{"README.md"} {
			delete(want, doc)
		}
		for name := range want {
			if strings.HasPrefix(name, StepsDir+"/") {
				delete(want, name)
			}
		}
		want["go.mod"] = "module realtime/02-two\n\ngo 1.26.0\n"
		want["calc/sub_test.go"] = readTree(t, filepath.Join(root, "02-two"))["calc/sub_test.go"]
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("state mismatch (-want +got):\n%s", diff)
		}
		assert.Contains(t, stdout.String(), "its new tests fail: cd "+dir+" && go test -run '^(TestSub)$' ./calc\n")
	})
	t.Run("inside a workspace it gets a go.work of its own, so go test runs there", func(t *testing.T) {
		workspace := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(workspace, "go.work"), []byte("go 1.26.0\n"), 0o644))
		dir := filepath.Join(workspace, "here")
		var stdout bytes.Buffer
		require.NoError(t, run(t.Context(), []string{"steps", "-root", root, "state", "01-one", "2", "green", dir}, &stdout, &stdout))

		assert.FileExists(t, filepath.Join(dir, "go.work"))
		cmd := exec.CommandContext(t.Context(), "go", "test", "./...")
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		assert.NoError(t, err, "%s", out)
	})
	t.Run("a red runs with the go test flags its failure block gives", func(t *testing.T) {
		readme := filepath.Join(root, "01-one", "README.md")
		data, err := os.ReadFile(readme)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(readme, bytes.Replace(data, []byte("[step]:# (2 red failure)"), []byte("[step]:# (2 red failure -timeout 5s)"), 1), 0o644))
		dir := filepath.Join(t.TempDir(), "here")
		var stdout bytes.Buffer

		require.NoError(t, run(t.Context(), []string{"steps", "-root", root, "state", "01-one", "2", "red", dir}, &stdout, &stdout))

		assert.Contains(t, stdout.String(), "its new tests fail: cd "+dir+" && go test -timeout 5s -run '^(TestAbs)$' ./calc\n")
	})
	t.Run("a change the series does not have is an error that says what it has", func(t *testing.T) {
		var stdout bytes.Buffer
		err := run(t.Context(), []string{"steps", "-root", root, "state", "02-two", "1", "refactor", t.TempDir()}, &stdout, &stdout)
		assert.EqualError(t, err, "02-two has no step 1 refactor (steps 1 to 1, each red and green, some with a refactor)")
	})
}
