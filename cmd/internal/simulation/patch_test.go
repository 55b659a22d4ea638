package simulation

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A strict unified-diff applier for the mutants (testdata/mutants): no fuzz.
// Each hunk's old lines (context and removals) must occur in the current
// source exactly as written. Line numbers may have moved (other edits above
// the hunk), so the old lines are searched for in the whole file; they must
// occur once, or, when they occur several times, at the hunk's own line. A
// hunk that no longer matches is an error, never a guess: the mutant must be
// made again against the current source.

// filePatch is one file's part of a patch.
type filePatch struct {
	path  string // relative to the module root, without a/ or b/
	hunks []hunk
}

// hunk is one @@ section: its old start line (1-based) and its lines, each
// with its prefix (' ' context, '-' removed, '+' added).
type hunk struct {
	oldStart int
	lines    []string
}

func (h hunk) side(keep byte) []string {
	var out []string

	for _, l := range h.lines {
		if l[0] == ' ' || l[0] == keep {
			out = append(out, l[1:])
		}
	}

	return out
}

// parsePatch splits a patch into its description (the text before the first
// file header, as git apply ignores it) and its files. Only changes of
// existing files are accepted: no new, deleted or renamed files, no binary
// patches, and every file ends with a newline.
func parsePatch(text string) (string, []filePatch, error) {
	lines := strings.Split(text, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}

	var (
		desc  []string
		files []filePatch
	)

	for i := 0; i < len(lines); {
		l := lines[i]

		switch {
		case strings.HasPrefix(l, "--- "):
			if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "+++ ") {
				return "", nil, fmt.Errorf("line %d: %q not followed by a +++ line", i+1, l)
			}

			oldPath, newPath := patchPath(l[4:], "a/"), patchPath(lines[i+1][4:], "b/")
			if oldPath == "" || oldPath != newPath {
				return "", nil, fmt.Errorf("line %d: only changes of one existing file are supported, not %q -> %q", i+1, l[4:], lines[i+1][4:])
			}

			files = append(files, filePatch{path: oldPath})
			i += 2
		case strings.HasPrefix(l, "@@ "):
			if len(files) == 0 {
				return "", nil, fmt.Errorf("line %d: hunk before any file header", i+1)
			}

			h, next, err := parseHunk(lines, i)
			if err != nil {
				return "", nil, err
			}

			f := &files[len(files)-1]
			f.hunks = append(f.hunks, h)
			i = next
		case len(files) == 0 && !strings.HasPrefix(l, "diff ") && !strings.HasPrefix(l, "index "):
			desc = append(desc, l)
			i++
		case strings.HasPrefix(l, "diff "), strings.HasPrefix(l, "index "):
			i++
		default:
			return "", nil, fmt.Errorf("line %d: unexpected %q (new, deleted, renamed and binary files are not supported)", i+1, l)
		}
	}

	if len(files) == 0 {
		return "", nil, errors.New("no file header (--- a/path, +++ b/path)")
	}

	for _, f := range files {
		if len(f.hunks) == 0 {
			return "", nil, fmt.Errorf("%s: no hunk", f.path)
		}
	}

	return strings.TrimSpace(strings.Join(desc, "\n")), files, nil
}

// patchPath strips a header path's prefix and any timestamp after a tab;
// "" for /dev/null or a path without the prefix.
func patchPath(s, prefix string) string {
	s, _, _ = strings.Cut(s, "\t")
	if s == "/dev/null" || !strings.HasPrefix(s, prefix) {
		return ""
	}

	return strings.TrimPrefix(s, prefix)
}

// parseHunk reads the hunk whose header is lines[i]; it returns the index
// of the line after it. The header's line counts must match the body.
func parseHunk(lines []string, i int) (hunk, int, error) {
	header := lines[i]

	ranges, _, ok := strings.Cut(strings.TrimPrefix(header, "@@ "), " @@")
	oldR, newR, ok2 := strings.Cut(ranges, " ")

	if !ok || !ok2 || !strings.HasPrefix(oldR, "-") || !strings.HasPrefix(newR, "+") {
		return hunk{}, 0, fmt.Errorf("line %d: malformed hunk header %q", i+1, header)
	}

	oldStart, oldCount, err1 := hunkRange(oldR[1:])
	_, newCount, err2 := hunkRange(newR[1:])

	if err := errors.Join(err1, err2); err != nil {
		return hunk{}, 0, fmt.Errorf("line %d: hunk header %q: %w", i+1, header, err)
	}

	h := hunk{oldStart: oldStart}
	j := i + 1

	for oldSeen, newSeen := 0, 0; oldSeen < oldCount || newSeen < newCount; j++ {
		if j >= len(lines) {
			return hunk{}, 0, fmt.Errorf("line %d: hunk %q ends early (%d of %d old, %d of %d new lines)", i+1, header, oldSeen, oldCount, newSeen, newCount)
		}

		l := lines[j]
		if l == "" {
			l = " " // a blank context line whose space an editor removed
		}

		switch l[0] {
		case ' ':
			oldSeen++
			newSeen++
		case '-':
			oldSeen++
		case '+':
			newSeen++
		default:
			return hunk{}, 0, fmt.Errorf("line %d: %q in hunk %q (\\ No newline at end of file is not supported)", j+1, lines[j], header)
		}

		if oldSeen > oldCount || newSeen > newCount {
			return hunk{}, 0, fmt.Errorf("line %d: hunk %q is longer than its header says", j+1, header)
		}

		h.lines = append(h.lines, l)
	}

	if len(h.side('-')) == 0 {
		return hunk{}, 0, fmt.Errorf("line %d: hunk %q has no old line to find its place by", i+1, header)
	}

	if slices.Equal(h.side('-'), h.side('+')) {
		return hunk{}, 0, fmt.Errorf("line %d: hunk %q changes nothing", i+1, header)
	}

	return h, j, nil
}

// hunkRange parses "start,count" or "start" (count 1).
func hunkRange(s string) (int, int, error) {
	start, count, found := strings.Cut(s, ",")

	a, err := strconv.Atoi(start)
	if err != nil {
		return 0, 0, err
	}

	if !found {
		return a, 1, nil
	}

	b, err := strconv.Atoi(count)

	return a, b, err
}

// apply applies the file's hunks, in order, to src.
func (f filePatch) apply(src string) (string, error) {
	if !strings.HasSuffix(src, "\n") {
		return "", fmt.Errorf("%s: does not end with a newline", f.path)
	}

	lines := strings.Split(strings.TrimSuffix(src, "\n"), "\n")
	shift := 0 // lines added minus removed by the hunks before

	for n, h := range f.hunks {
		old, repl := h.side('-'), h.side('+')
		want := h.oldStart - 1 + shift

		var at []int

		for i := 0; i+len(old) <= len(lines); i++ {
			if slices.Equal(lines[i:i+len(old)], old) {
				at = append(at, i)
			}
		}

		pos := -1

		switch {
		case len(at) == 1:
			pos = at[0]
		case slices.Contains(at, want):
			pos = want
		case len(at) == 0:
			return "", fmt.Errorf("%s: hunk %d (@@ -%d): its old lines are not in the current source", f.path, n+1, h.oldStart)
		default:
			return "", fmt.Errorf("%s: hunk %d (@@ -%d): its old lines occur %d times, none at its own line: give it more context", f.path, n+1, h.oldStart, len(at))
		}

		lines = slices.Concat(lines[:pos], repl, lines[pos+len(old):])
		shift += len(repl) - len(old)
	}

	return strings.Join(lines, "\n") + "\n", nil
}

func TestPatchApplier(t *testing.T) {
	const patch = `Removes a guard.

--- a/x/f.go
+++ b/x/f.go
@@ -2,3 +2,2 @@ func f() {
 	a()
-	if guard {
 	b()
`

	desc, files, err := parsePatch(patch)
	if err != nil || desc != "Removes a guard." || len(files) != 1 || files[0].path != "x/f.go" {
		t.Fatalf("parse: %q %v %v", desc, files, err)
	}

	// Two lines were added above the hunk since the patch was made.
	got, err := files[0].apply("func f() {\n\tz()\n\tz()\n\ta()\n\tif guard {\n\tb()\n}\n")
	if want := "func f() {\n\tz()\n\tz()\n\ta()\n\tb()\n}\n"; err != nil || got != want {
		t.Fatalf("apply at an offset: %q, %v", got, err)
	}

	for src, want := range map[string]string{
		"func f() {\n\ta()\n\tif guarded {\n\tb()\n}\n":                                        "not in the current source",
		"\ta()\n\tif guard {\n\tb()\n\ta()\n\tif guard {\n\tb()\n\ta()\n\tif guard {\n\tb()\n": "occur 3 times",
	} {
		if _, err := files[0].apply(src); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("apply to %q: %v, want %q", src, err, want)
		}
	}

	for _, bad := range []string{
		"--- a/f.go\n+++ b/f.go\n@@ -1,2 +1,1 @@\n-a\n",     // shorter than its header
		"--- a/f.go\n+++ b/f.go\n@@ -1,1 +1,1 @@\n a\n-b\n", // longer
		"--- /dev/null\n+++ b/f.go\n@@ -0,0 +1,1 @@\n+a\n",  // a new file
		"--- a/f.go\n+++ b/f.go\n@@ -1,1 +1,1 @@\n a\n",     // no change
		"just text\n",
	} {
		if _, _, err := parsePatch(bad); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}
