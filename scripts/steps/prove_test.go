package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fixture copies testdata/good to a scratch root and lays the files of
// testdata/broken/variant over it ("" for none), so tests may change it.
func fixture(tb testing.TB, variant string) string {
	tb.Helper()
	root := tb.TempDir()
	require.NoError(tb, os.CopyFS(root, os.DirFS("testdata/good")))
	if variant != "" {
		overlay := filepath.Join("testdata/broken", variant)
		require.DirExists(tb, overlay)
		require.NoError(tb, filepath.WalkDir(overlay, func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(overlay, p)
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(root, rel), data, 0o644)
		}))
	}
	return root
}

// problems returns what the reports found, with root written as "ROOT".
func problems(root string, reports []*Report) []string {
	var all []string
	for _, r := range reports {
		for _, p := range r.Problems {
			all = append(all, strings.ReplaceAll(p.String(), root, "ROOT"))
		}
	}
	return all
}

func statuses(r *Report) []string {
	var lines []string
	for _, s := range r.States {
		lines = append(lines, fmt.Sprintf("step %d %s: %s", s.Step, s.Change, s.Status))
	}
	return lines
}

func TestProve_AcceptsASeriesThatRebuildsItsChapterAndIsShownAsItRuns(t *testing.T) {
	t.Parallel()
	root := fixture(t, "")

	reports, err := Prove(t.Context(), root, nil, ProveOptions{Jobs: 2})

	require.NoError(t, err)
	assert.Empty(t, problems(root, reports))
	require.Len(t, reports, 2)
	want := []string{
		"step 1 red: fails to build: calc/calc_test.go:6:12: undefined: Add",
		"step 1 green: go vet, go test -race: pass",
		"step 2 red: fails: TestAbs: abs_test.go:N: Abs(-2) = -2, want 2",
		"step 2 green: go vet, go test -race: pass",
		"step 2 refactor: go vet, go test -race: pass",
	}
	if diff := cmp.Diff(want, statuses(reports[0])); diff != "" {
		t.Errorf("01-one mismatch (-want +got):\n%s", diff)
	}
	assert.Equal(t, 1, reports[1].Steps, "02-two")
}

func TestProve_CatchesEachWayASeriesGoesWrong(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, variant, chapter string
		want                   []string // each must be the start of one problem
	}{
		{
			name: "a chapter that no longer is what its series builds", variant: "drifted", chapter: "02-two",
			want: []string{"02-two: the series does not rebuild the chapter: after step 1 green, calc/sub.go differs: " +
				`line 3 of the block is "// Sub returns a - b.", the code has "// Sub returns a minus b."`},
		},
		{
			name: "a red whose new test already passes", variant: "red-passes", chapter: "01-one",
			want: []string{"01-one step 2 red: TestAbs passes; a red's new tests must fail before its green is written"},
		},
		{
			name: "a green whose tests fail", variant: "green-fails", chapter: "01-one",
			want: []string{"01-one step 2 green: go test fails; a green must pass every test of the chapter:\n    --- FAIL: TestAbs"},
		},
		{
			name: "a walkthrough that shows another failure than the real one", variant: "shown-differs", chapter: "01-one",
			want: []string{`ROOT/01-one/README.md:71: step 2 red: the README does not show why TestAbs fails in the real run: "abs_test.go:N: Abs(-2) = -2, want 2"`},
		},
		{
			name: "a red that fails because a file it does not touch stops compiling", variant: "unrelated-compile", chapter: "01-one",
			want: []string{
				"01-one step 2 red: fails to build because of calc/calc_test.go, a file this change does not touch: " +
					"calc/calc_test.go:6:12: assignment mismatch: 1 variable but Add returns 2 values",
				"ROOT/01-one/README.md step 2: the walkthrough does not show 4 line(s) of code the step adds, first calc/calc.go: `func Add(a, b int) (int, error) {`",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			root := fixture(t, c.variant)

			reports, err := Prove(t.Context(), root, []string{c.chapter}, ProveOptions{Jobs: 2})

			require.NoError(t, err)
			got := problems(root, reports)
			assert.Len(t, got, len(c.want), "problems:\n%s", strings.Join(got, "\n"))
			for _, want := range c.want {
				assert.True(t, slices.ContainsFunc(got, func(p string) bool { return strings.HasPrefix(p, want) }),
					"want a problem starting %q; got:\n%s", want, strings.Join(got, "\n"))
			}
		})
	}
}

func TestProve_SaysAChapterWithoutASeriesHasNoneYet(t *testing.T) {
	root := fixture(t, "")
	require.NoError(t, os.RemoveAll(filepath.Join(root, "02-two", StepsDir)))
	var stdout, stderr bytes.Buffer

	err := run(t.Context(), []string{"steps", "-root", root, "prove", "02-two"}, &stdout, &stderr)

	require.NoError(t, err)
	assert.Equal(t, "02-two: no series yet\n", stdout.String())
}

func TestProve_WriteTakesLineNumbersAndCodeFromTheRealStates(t *testing.T) {
	t.Parallel()
	root := fixture(t, "")
	readme := filepath.Join(root, "01-one", "README.md")
	good, err := os.ReadFile(readme)
	require.NoError(t, err)
	stale := strings.Replace(string(good), "    abs_test.go:8: Abs(-2)", "    abs_test.go:80: Abs(-2)", 1)
	stale = strings.Replace(stale, "\treturn max(x, -x)\n", "\treturn max(-x, x)\n", 1)
	require.NotEqual(t, string(good), stale)
	require.NoError(t, os.WriteFile(readme, []byte(stale), 0o644))

	t.Run("a stale line number alone is no problem, since numbers move as code is written", func(t *testing.T) {
		reports, err := Prove(t.Context(), root, []string{"01-one"}, ProveOptions{Jobs: 2})
		require.NoError(t, err)
		assert.Equal(t, []string{
			"ROOT/01-one/README.md:95: block drifted from step 2 refactor (2 refactor diff calc/abs.go): " +
				`line 14 of the block is "+\treturn max(-x, x)", the code has "+\treturn max(x, -x)" (go run ./scripts/steps prove -w rewrites it)`,
		}, problems(root, reports))
	})
	t.Run("-w rewrites both from the real run and the real state", func(t *testing.T) {
		_, err := Prove(t.Context(), root, []string{"01-one"}, ProveOptions{Jobs: 2, Write: true})
		require.NoError(t, err)
		got, err := os.ReadFile(readme)
		require.NoError(t, err)
		if diff := cmp.Diff(string(good), string(got)); diff != "" {
			t.Errorf("README mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestProve_NeedsEachStepShownInOrderAndEveryCodeBlockToBeAState(t *testing.T) {
	t.Parallel()
	root := fixture(t, "")
	readme := filepath.Join(root, "02-two", "README.md")
	require.NoError(t, os.WriteFile(readme, []byte("# 02 · Two\n\n"+
		"[step]:# (1 green calc/sub.go)\n```go\npackage calc\n\n// Sub returns a minus b.\nfunc Sub(a, b int) int {\n\treturn Add(a, -b)\n}\n```\n\n"+
		"[step]:# (1 red calc/sub_test.go /func TestSub/ /^}/)\n```go\nfunc TestSub(t *testing.T) {\n\tif got := Sub(5, 3); got != 2 {\n"+
		"\t\tt.Errorf(\"Sub(5, 3) = %d, want 2\", got)\n\t}\n}\n```\n\n"+
		"[embedmd]:# (calc/sub.go /func Sub/ /^}/)\n```go\nfunc Sub(a, b int) int {\n\treturn Add(a, -b)\n}\n```\n\n"+
		"[step]:# (2 red failure)\n```text\n```\n"), 0o644))

	reports, err := Prove(t.Context(), root, []string{"02-two"}, ProveOptions{Jobs: 2})

	require.NoError(t, err)
	assert.Equal(t, []string{
		"ROOT/02-two/README.md:23: in a chapter with a series, code blocks show the code as it stood: " +
			"mark this one [step]:# (N red|green|refactor FILE /start/ /end/) or [step]:# (N CHANGE diff)",
		"ROOT/02-two/README.md:30: 02-two has no step 2 red",
		"ROOT/02-two/README.md step 1: the walkthrough does not show the red's failure: add a text block marked [step]:# (1 red failure)",
	}, problems(root, reports), "the test block after the code of the same step is in order")
}

func TestProve_NeedsTheStepsShownInTheOrderTheyAreBuilt(t *testing.T) {
	t.Parallel()
	root := fixture(t, "")
	readme := filepath.Join(root, "01-one", "README.md")
	data, err := os.ReadFile(readme)
	require.NoError(t, err)
	late := "\nOne more look at the first test:\n\n[step]:# (1 red calc/calc_test.go /func TestAdd/ /^}/)\n```go\n" +
		"func TestAdd(t *testing.T) {\n\tif got := Add(2, 3); got != 5 {\n\t\tt.Errorf(\"Add(2, 3) = %d, want 5\", got)\n\t}\n}\n```\n"
	require.NoError(t, os.WriteFile(readme, append(data, late...), 0o644))

	reports, err := Prove(t.Context(), root, []string{"01-one"}, ProveOptions{Jobs: 2})

	require.NoError(t, err)
	assert.Equal(t, []string{
		"ROOT/01-one/README.md:116: a block of step 1 after one of step 2 (line 95): show the steps in the order they are built",
	}, problems(root, reports))
}

func TestBuildStates_ChecksTheLastStateInTheChapterItself(t *testing.T) {
	t.Parallel()
	for _, variant := range []string{"", "drifted"} {
		root := fixture(t, variant)
		ch, err := FindChapter(root, "02-two")
		require.NoError(t, err)
		patches, err := LoadSeries(ch)
		require.NoError(t, err)

		states, _ := buildStates(t.Context(), ch, patches, t.TempDir())

		require.NotEmpty(t, states)
		want := ch.Dir // its tests are then the ones the README's command ran and go test cached
		if variant == "drifted" {
			want = "" // not the chapter: checked where the series built it
		}
		assert.Equal(t, want, states[len(states)-1].chapter, "variant %q", variant)
		for _, s := range states[:len(states)-1] {
			assert.Empty(t, s.chapter, "variant %q, %s", variant, s.patch.Name())
		}
	}
}
