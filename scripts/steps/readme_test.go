package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeyLines_PickWhatSaysWhyATestFailed(t *testing.T) {
	cases := []struct {
		name   string
		output []string
		want   []string
	}{
		{
			name:   "t.Errorf: its message, with the line number left out",
			output: []string{"=== RUN   TestAbs", "    abs_test.go:8: Abs(-2) = -2, want 2", "--- FAIL: TestAbs (0.00s)"},
			want:   []string{"abs_test.go:N: Abs(-2) = -2, want 2"},
		},
		{
			name: "testify: the error, and what was expected, not the trace",
			output: []string{
				"=== RUN   TestShortPoll_PrintsEveryUpdate",
				"    client_test.go:154: ",
				"        \tError Trace:\t/tmp/x/01-short-polling/client/client_test.go:154",
				"        \t            \t/tmp/x/01-short-polling/client/helpers_test.go:20",
				"        \tError:      \tNot equal: ",
				"        \t            \texpected: []string{\"1 taxi\", \"2 bridge\"}",
				"        \t            \tactual  : []string{\"2 bridge\"}",
				"        \tTest:       \tTestShortPoll_PrintsEveryUpdate",
			},
			want: []string{"Error: Not equal:", `expected: []string{"1 taxi", "2 bridge"}`},
		},
		{
			name:   "a subtest's failure, under its parent",
			output: []string{"=== RUN   TestLog", "=== RUN   TestLog/after_3", "    feed_test.go:70: got 2 updates, want 0", "    --- FAIL: TestLog/after_3 (0.00s)"},
			want:   []string{"feed_test.go:N: got 2 updates, want 0"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, keyLines(c.output)); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompareFailure_ComparesTheTestNamesAndTheKeyLinesOnly(t *testing.T) {
	failing := RedRun{
		Failed: map[string]bool{"TestAbs": true, "TestAbs/negative": true},
		Keys:   map[string][]string{"TestAbs": {"abs_test.go:N: Abs(-2) = -2, want 2"}},
	}
	broken := RedRun{BuildFailed: true, BuildKey: "calc/calc_test.go:6:12: undefined: Add"}
	partly := RedRun{BuildFailed: true, BuildKey: "calc/calc_test.go:6:12: undefined: Add", Failed: map[string]bool{"TestAbs": true}}
	cases := []struct {
		name  string
		shown string
		run   RedRun
		want  []string
	}{
		{
			name:  "other line numbers, timings and trimmed lines are fine",
			shown: "--- FAIL: TestAbs (0.12s)\n    --- FAIL: TestAbs/negative (0.00s)\n        abs_test.go:31: Abs(-2) = -2, want 2\n[…]\nFAIL\n",
			run:   failing,
		},
		{
			name:  "a measured value shown as … is fine",
			shown: "--- FAIL: TestHeap (1.49s)\n    heap_test.go:9: \"…\" is not less than or equal to \"16777216\"\n",
			run: RedRun{Failed: map[string]bool{"TestHeap": true},
				Keys: map[string][]string{"TestHeap": {`heap_test.go:N: "75712144" is not less than or equal to "16777216"`}}},
		},
		{
			name:  "… does not excuse another reason",
			shown: "--- FAIL: TestHeap (1.49s)\n    heap_test.go:9: \"…\" is not less than \"1\"\n",
			run: RedRun{Failed: map[string]bool{"TestHeap": true},
				Keys: map[string][]string{"TestHeap": {`heap_test.go:N: "75712144" is not less than or equal to "16777216"`}}},
			want: []string{`the README does not show why TestHeap fails in the real run: "heap_test.go:N: \"75712144\" is not less than or equal to \"16777216\""`},
		},
		{
			name:  "another reason is not",
			shown: "--- FAIL: TestAbs (0.00s)\n    abs_test.go:8: Abs(-2) = 2, want 2\n",
			run:   failing,
			want:  []string{`the README does not show why TestAbs fails in the real run: "abs_test.go:N: Abs(-2) = -2, want 2"`},
		},
		{
			name:  "a test that does not fail is not",
			shown: "--- FAIL: TestAdd (0.00s)\n",
			run:   failing,
			want:  []string{"the README shows TestAdd failing, but in the real run it does not fail"},
		},
		{
			name:  "no failing test at all is not",
			shown: "ok\n",
			run:   failing,
			want:  []string{"the README shows no --- FAIL line; the real run fails TestAbs"},
		},
		{
			name:  "a build failure shows its first error, at any line number",
			shown: "# realtime/01-one/calc\ncalc/calc_test.go:9:12: undefined: Add\nFAIL\trealtime/01-one/calc [build failed]\n",
			run:   broken,
		},
		{
			name:  "a build failure shown as a failing test is not",
			shown: "--- FAIL: TestAdd (0.00s)\n",
			run:   broken,
			want: []string{
				"the README shows TestAdd failing, but the real run does not build",
				`the README does not show the real build failure, which begins "calc/calc_test.go:6:12: undefined: Add"`,
			},
		},
		{
			name:  "a package that builds fails its tests beside one that does not",
			shown: "# realtime/01-one/calc\ncalc/calc_test.go:6:12: undefined: Add\n--- FAIL: TestAbs (0.00s)\nFAIL\trealtime/01-one/abs\n",
			run:   partly,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if diff := cmp.Diff(c.want, compareFailure(c.shown, c.run)); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseDirective_ReadsEachKindAndExplainsMistakes(t *testing.T) {
	cases := []struct {
		args    string
		want    directive
		wantErr string
	}{
		{args: "2 red calc/abs_test.go /func TestAbs/ /^}/", want: directive{Step: 2, Change: Red, Kind: kindRegion, File: "calc/abs_test.go", Patterns: []string{"func TestAbs", "^}"}}},
		{args: "1 green calc/sub.go", want: directive{Step: 1, Change: Green, Kind: kindRegion, File: "calc/sub.go"}},
		{args: `3 refactor a.go /\/\/ Abs/ $`, want: directive{Step: 3, Change: Refactor, Kind: kindRegion, File: "a.go", Patterns: []string{"// Abs", "$"}}},
		{args: "2 green diff", want: directive{Step: 2, Change: Green, Kind: kindDiff, Files: []string{}}},
		{args: "2 green diff a.go b.go", want: directive{Step: 2, Change: Green, Kind: kindDiff, Files: []string{"a.go", "b.go"}}},
		{args: "4 red failure", want: directive{Step: 4, Change: Red, Kind: kindFailure, Flags: []string{}}},
		{args: "4 red failure -timeout 5s", want: directive{Step: 4, Change: Red, Kind: kindFailure, Flags: []string{"-timeout", "5s"}}},
		{args: "4 red failure in 5s", wantErr: "a failure is shown as [step]:# (N red failure [GO TEST FLAGS])"},
		{args: "4 green failure", wantErr: "a failure is shown as [step]:# (N red failure [GO TEST FLAGS])"},
		{args: "x red failure", wantErr: `step "x" is not a step number`},
		{args: "1 blue a.go", wantErr: `"blue" is not red, green or refactor`},
		{args: "1 red", wantErr: "want [step]:# (N red|green|refactor FILE [/start/ [/end/]] | diff [FILE...] | failure), got (1 red)"},
		{args: "1 red a.go /unterminated", wantErr: `unterminated regexp in "/unterminated"`},
	}
	for _, c := range cases {
		t.Run(c.args, func(t *testing.T) {
			got, err := parseDirective(c.args)
			if c.wantErr != "" {
				assert.EqualError(t, err, c.wantErr)
				return
			}
			require.NoError(t, err)
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadSeries_KeepsTheFormatStrict(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(steps string) error
		wantErr string
	}{
		{
			name: "a gap in the numbers",
			mutate: func(steps string) error {
				return os.Rename(filepath.Join(steps, "02-abs-of-a-negative-number"), filepath.Join(steps, "03-abs"))
			},
			wantErr: "03-abs: want step 2 here: steps are numbered from 1 without gaps",
		},
		{
			name: "a step without its green",
			mutate: func(steps string) error {
				return os.Remove(filepath.Join(steps, "01-add-sums-two-numbers", "green.patch"))
			},
			wantErr: "01-add-sums-two-numbers: a step needs red.patch and green.patch",
		},
		{
			name: "a stray file",
			mutate: func(steps string) error {
				return os.WriteFile(filepath.Join(steps, "01-add-sums-two-numbers", "notes.txt"), nil, 0o644)
			},
			wantErr: "notes.txt: a step holds only red.patch, green.patch and refactor.patch",
		},
		{
			name: "a patch without a diff",
			mutate: func(steps string) error {
				return os.WriteFile(filepath.Join(steps, "01-add-sums-two-numbers", "green.patch"), []byte("Add\n"), 0o644)
			},
			wantErr: "green.patch: no diff in it (want a message, then git diff output)",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := fixture(t, "")
			require.NoError(t, c.mutate(filepath.Join(root, "01-one", StepsDir)))
			ch, err := FindChapter(root, "01-one")
			require.NoError(t, err)

			_, err = LoadSeries(ch)

			require.Error(t, err)
			assert.Contains(t, err.Error(), c.wantErr)
		})
	}
}
