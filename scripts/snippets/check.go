package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// Report is what Check found in one Markdown file.
type Report struct {
	Checked  int      // blocks compared with their source
	Problems []string // one message each, "file:line: what"
}

var (
	// embedmdLine is embedmd's directive: [embedmd]:# (ARGS).
	embedmdLine = regexp.MustCompile(`^\[embedmd\]:#\s*\((.*)\)\s*$`)
	// intermediateLine marks a block that shows a replaced step.
	intermediateLine = regexp.MustCompile(`^<!--\s*intermediate:\s*\S.*-->\s*$`)
	// stepLine marks a block that shows a state of a chapter's step series;
	// scripts/steps checks it against that state.
	stepLine = regexp.MustCompile(`^\[step\]:#\s*\(.*\)\s*$`)
)

// block is one fenced code block.
type block struct {
	line      int    // 1-based line of the opening fence
	lang      string // the info string's first word
	marker    string // the nearest non-blank line before the fence
	markerAt  int    // its 1-based line, 0 when none
	bodyStart int    // index into lines of the first body line
	bodyEnd   int    // index into lines of the closing fence
	body      string
}

// Check checks the blocks of the Markdown file at path. With write, drifted
// blocks are replaced by their source and the file is rewritten.
func Check(path string, write bool) (Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Report{}, err
	}
	lines := strings.SplitAfter(string(data), "\n")
	blocks, err := parseBlocks(lines)
	if err != nil {
		return Report{}, fmt.Errorf("%s: %w", path, err)
	}
	var report Report
	changed := false
	for i := len(blocks) - 1; i >= 0; i-- { // from the end, so rewrites keep earlier indexes valid
		b := blocks[i]
		where := fmt.Sprintf("%s:%d", path, b.line)
		if m := embedmdLine.FindStringSubmatch(b.marker); m != nil {
			report.Checked++
			want, desc, err := extract(filepath.Dir(path), m[1])
			if err != nil {
				report.Problems = append(report.Problems, fmt.Sprintf("%s: %v", where, err))
				continue
			}
			if want == b.body {
				continue
			}
			if write {
				lines = splice(lines, b.bodyStart, b.bodyEnd, want)
				changed = true
				continue
			}
			report.Problems = append(report.Problems,
				fmt.Sprintf("%s: block drifted from %s (-code +README):\n%s", where, desc, diff(want, b.body)))
			continue
		}
		if intermediateLine.MatchString(b.marker) || stepLine.MatchString(b.marker) {
			continue
		}
		if b.lang == "go" {
			report.Problems = append(report.Problems, fmt.Sprintf(
				"%s: Go block has no source: put [embedmd]:# (file.go /start/ /end/) before it, "+
					"or <!-- intermediate: why --> if it shows a step that later code replaces", where))
		}
	}
	reverse(report.Problems)
	if changed {
		if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o644); err != nil {
			return report, err
		}
	}
	return report, nil
}

func reverse(s []string) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// parseBlocks finds the fenced blocks (``` or ~~~, three or more) in lines.
func parseBlocks(lines []string) ([]block, error) {
	var blocks []block
	marker, markerAt := "", 0
	for i := 0; i < len(lines); i++ {
		text := strings.TrimRight(lines[i], "\r\n")
		fence, info, ok := openingFence(text)
		if !ok {
			if strings.TrimSpace(text) != "" {
				marker, markerAt = strings.TrimSpace(text), i+1
			}
			continue
		}
		b := block{line: i + 1, marker: marker, markerAt: markerAt, bodyStart: i + 1}
		if fields := strings.Fields(info); len(fields) > 0 {
			b.lang = fields[0]
		}
		end := -1
		for j := i + 1; j < len(lines); j++ {
			if closes(strings.TrimRight(lines[j], "\r\n"), fence) {
				end = j
				break
			}
		}
		if end < 0 {
			return nil, fmt.Errorf("line %d: code block is never closed", i+1)
		}
		b.bodyEnd = end
		b.body = strings.Join(lines[i+1:end], "")
		blocks = append(blocks, b)
		i = end
		marker, markerAt = "", 0
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

// extract returns the region that an embedmd directive's arguments name,
// and a description of it for messages.
func extract(dir, args string) (region, desc string, err error) {
	path, patterns, err := parseArgs(args)
	if err != nil {
		return "", "", err
	}
	desc = strings.TrimSpace(args)
	data, err := os.ReadFile(filepath.Join(dir, path))
	if err != nil {
		return "", desc, fmt.Errorf("source of the block: %w", err)
	}
	content := string(data)
	if len(patterns) == 0 {
		return content, desc, nil
	}
	start, err := regexp.Compile("(?m)" + patterns[0])
	if err != nil {
		return "", desc, fmt.Errorf("start regexp /%s/: %w", patterns[0], err)
	}
	loc := start.FindStringIndex(content)
	if loc == nil {
		return "", desc, fmt.Errorf("start /%s/ not found in %s", patterns[0], path)
	}
	if len(patterns) == 1 {
		return withNewline(content[loc[0]:loc[1]]), desc, nil
	}
	if patterns[1] == "$" {
		return content[loc[0]:], desc, nil
	}
	end, err := regexp.Compile("(?m)" + patterns[1])
	if err != nil {
		return "", desc, fmt.Errorf("end regexp /%s/: %w", patterns[1], err)
	}
	endLoc := end.FindStringIndex(content[loc[1]:])
	if endLoc == nil {
		return "", desc, fmt.Errorf("end /%s/ not found after /%s/ in %s", patterns[1], patterns[0], path)
	}
	return withNewline(content[loc[0] : loc[1]+endLoc[1]]), desc, nil
}

func withNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

// parseArgs splits "path [lang] [/start/ [/end/|$]]".
func parseArgs(args string) (path string, patterns []string, err error) {
	rest := strings.TrimSpace(args)
	path, rest, _ = strings.Cut(rest, " ")
	rest = strings.TrimSpace(rest)
	if path == "" {
		return "", nil, fmt.Errorf("embedmd directive names no file")
	}
	if rest != "" && rest[0] != '/' && rest != "$" {
		_, rest, _ = strings.Cut(rest, " ") // a language word
		rest = strings.TrimSpace(rest)
	}
	for rest != "" {
		if rest == "$" {
			patterns = append(patterns, "$")
			break
		}
		if rest[0] != '/' {
			return "", nil, fmt.Errorf("embedmd directive: want /regexp/, got %q", rest)
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
			return "", nil, fmt.Errorf("embedmd directive: unterminated regexp in %q", rest)
		}
		patterns = append(patterns, re.String())
		rest = strings.TrimSpace(rest[i+1:])
	}
	if len(patterns) > 2 {
		return "", nil, fmt.Errorf("embedmd directive: at most a start and an end regexp")
	}
	return path, patterns, nil
}

// splice replaces lines[from:to] with text.
func splice(lines []string, from, to int, text string) []string {
	out := append([]string{}, lines[:from]...)
	out = append(out, splitLines(text)...)
	return append(out, lines[to:]...)
}

func diff(code, readme string) string {
	text, _ := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: splitLines(code), B: splitLines(readme),
		FromFile: "code", ToFile: "README", Context: 2,
	})
	var buf bytes.Buffer
	for _, line := range strings.SplitAfter(text, "\n") {
		if line != "" {
			buf.WriteString("    " + line)
		}
	}
	return buf.String()
}

// splitLines splits text after each newline, with no empty last element.
func splitLines(text string) []string {
	lines := strings.SplitAfter(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}
