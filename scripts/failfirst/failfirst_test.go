package main

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckChapter_NewTestsThatFailFirstAreOK(t *testing.T) {
	results, err := CheckChapter(t.Context(), "testdata/good/01-one", "testdata/good/02-two")

	require.NoError(t, err)
	assert.Equal(t, []Result{
		{File: "calc/calc_test.go", Test: "TestAbs", Before: Failed, After: Passed},
		{File: "sub/sub_test.go", Test: "TestSub", Before: BuildFailed, After: Passed},
	}, results, "TestAdd is unchanged but for the module path, so it is not checked")
	for _, r := range results {
		assert.True(t, r.OK(), r.Test)
	}
}

func TestCheckChapter_CatchesANewTestThatAlreadyPassesOnThePreviousChapter(t *testing.T) {
	results, err := CheckChapter(t.Context(), "testdata/bad/01-one", "testdata/bad/02-two")

	require.NoError(t, err)
	require.Equal(t, []Result{
		{File: "calc/calc_test.go", Test: "TestAbs", Before: Passed, After: Passed},
	}, results)
	assert.False(t, results[0].OK())
}

func TestRun_PrintsATableAndFailsOnATestThatDrivesNothing(t *testing.T) {
	var stdout, stderr bytes.Buffer

	err := run(t.Context(), []string{"failfirst", "-root", "testdata/bad"}, &stdout, &stderr)

	assert.EqualError(t, err, "1 new test does not fail first and pass after")
	assert.Equal(t, `
02-two: new or changed tests, run on 01-one and on 02-two

| test file | test | on 01-one | on 02-two | |
|---|---|---|---|---|
| calc/calc_test.go | TestAbs | passes | passes | **NOT OK** |
`, stdout.String())
}

func TestRun_PassesWhenEveryNewTestFailsFirst(t *testing.T) {
	var stdout, stderr bytes.Buffer

	err := run(t.Context(), []string{"failfirst", "-root", "testdata/good"}, &stdout, &stderr)

	require.NoError(t, err)
	assert.Contains(t, stdout.String(), "| sub/sub_test.go | TestSub | fails: build failed | passes | ok |")
	assert.Contains(t, stdout.String(), "| calc/calc_test.go | TestAbs | fails: test failed | passes | ok |")
}

func TestChapters_ListsNumberedModuleFoldersInOrder(t *testing.T) {
	chapters, err := Chapters("testdata/good")

	require.NoError(t, err)
	assert.Equal(t, []string{"testdata/good/01-one", "testdata/good/02-two"}, chapters)
}
