package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheck_AcceptsMarkedBlocksThatMatchTheCode(t *testing.T) {
	report, err := Check("testdata/ok/README.md", false)

	require.NoError(t, err)
	assert.Empty(t, report.Problems)
	assert.Equal(t, 2, report.Checked, "the two embedmd blocks; the intermediate and output blocks are not compared")
}

func TestCheck_ReportsADriftedBlockWithFileRegionAndDiff(t *testing.T) {
	report, err := Check("testdata/drifted/README.md", false)

	require.NoError(t, err)
	require.Len(t, report.Problems, 1)
	want := `testdata/drifted/README.md:4: block drifted from code.go /func Greet/ /^}/ (-code +README):
    --- code
    +++ README
    @@ -1,3 +1,3 @@
     func Greet(name string) string {
    -	return "hello, " + name
    +	return "hi, " + name
     }
`
	assert.Equal(t, want, report.Problems[0])
}

func TestCheck_ReportsAnUnmarkedGoBlock(t *testing.T) {
	report, err := Check("testdata/unmarked/README.md", false)

	require.NoError(t, err)
	assert.Equal(t, []string{
		"testdata/unmarked/README.md:12: Go block has no source: put [embedmd]:# (file.go /start/ /end/) before it, " +
			"or <!-- intermediate: why --> if it shows a step that later code replaces",
	}, report.Problems)
}

func TestCheck_ReportsARegionOrFileThatIsGone(t *testing.T) {
	report, err := Check("testdata/broken/README.md", false)

	require.NoError(t, err)
	require.Len(t, report.Problems, 2)
	assert.Equal(t, "testdata/broken/README.md:4: start /func Farewell/ not found in code.go", report.Problems[0])
	assert.Contains(t, report.Problems[1], "testdata/broken/README.md:9: source of the block: open testdata/broken/missing.go")
}

func TestCheck_WriteRewritesDriftedBlocksFromTheCode(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"README.md", "code.go"} {
		data, err := os.ReadFile(filepath.Join("testdata/drifted", name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o644))
	}
	readme := filepath.Join(dir, "README.md")

	_, err := Check(readme, true)
	require.NoError(t, err)

	report, err := Check(readme, false)
	require.NoError(t, err)
	assert.Empty(t, report.Problems)
	data, err := os.ReadFile(readme)
	require.NoError(t, err)
	assert.Contains(t, string(data), "```go\nfunc Greet(name string) string {\n\treturn \"hello, \" + name\n}\n```\n")
}

func TestCheck_LeavesBlocksOfAStepSeriesToScriptsSteps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "README.md")
	require.NoError(t, os.WriteFile(path, []byte("[step]:# (2 red calc/abs.go)\n```go\nfunc Abs(x int) int { return x }\n```\n"), 0o644))

	report, err := Check(path, false)

	require.NoError(t, err)
	assert.Empty(t, report.Problems, "the code of an earlier state is not in the folder; scripts/steps checks it")
	assert.Zero(t, report.Checked)
}

func TestCheck_RejectsAnUnclosedBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "README.md")
	require.NoError(t, os.WriteFile(path, []byte("text\n```go\nfunc f() {}\n"), 0o644))

	_, err := Check(path, false)

	assert.EqualError(t, err, path+": line 2: code block is never closed")
}

func TestRun_ExitsWithAnErrorAndPrintsEveryProblem(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"snippets", "testdata/ok/README.md", "testdata/drifted/README.md", "testdata/unmarked/README.md"}, &stdout, &stderr)

	assert.EqualError(t, err, "2 problem(s) in 3 file(s)")
	assert.Equal(t, 2, strings.Count(stdout.String(), "testdata/"), stdout.String())
}

func TestRun_SaysHowManyBlocksMatch(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"snippets", "testdata/ok/README.md"}, &stdout, &stderr)

	require.NoError(t, err)
	assert.Equal(t, "snippets: 2 block(s) in 1 file(s) match the code\n", stdout.String())
}
