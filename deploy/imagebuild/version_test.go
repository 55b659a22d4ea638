package imagebuild_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/deploy/imagebuild"
)

func TestCheckVersion(t *testing.T) {
	for _, v := range []string{"v0.0.0", "v1.2.3", "v1.2.3-rc.1", "v1.2.4-0.20260102030405-0123456789ab", "v0.0.0-20260102030405-0123456789ab-dirty"} {
		if err := imagebuild.CheckVersion(v); err != nil {
			t.Errorf("%s refused: %v", v, err)
		}
	}

	for _, v := range []string{"", "dev", "1.2.3", "v1.2", "v1.2.3+build.5", "v01.2.3", "v1.2.3-", "v1.2.3-rc..1", "0123abc", "v1.2.3 "} {
		err := imagebuild.CheckVersion(v)
		if err == nil {
			t.Errorf("%q accepted", v)

			continue
		}

		if !strings.Contains(err.Error(), `"`+v+`"`) {
			t.Errorf("%q: the error does not name the version: %v", v, err)
		}
	}
}

func TestGitStateVersion(t *testing.T) {
	const commit = "0123456789abcdef0123456789abcdef01234567"

	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("CET", 3600)) // 02:04:05 UTC

	for _, tc := range []struct {
		name      string
		atHead    []string
		reachable []string
		dirty     bool
		want      string
	}{
		{name: "no tag", want: "v0.0.0-20260102020405-0123456789ab"},
		{name: "no tag, dirty", dirty: true, want: "v0.0.0-20260102020405-0123456789ab-dirty"},
		{name: "exact tag", atHead: []string{"v1.2.3"}, reachable: []string{"v1.2.3", "v1.2.2"}, want: "v1.2.3"},
		{name: "exact tag, dirty", atHead: []string{"v1.2.3"}, reachable: []string{"v1.2.3"}, dirty: true, want: "v1.2.3-dirty"},
		{name: "two tags at HEAD", atHead: []string{"v1.2.3", "v1.3.0-rc.1"}, want: "v1.3.0-rc.1"},
		{name: "after a tag", reachable: []string{"v1.2.3", "v1.10.0", "v1.9.9"}, want: "v1.10.1-0.20260102020405-0123456789ab"},
		{name: "after a pre-release tag", reachable: []string{"v2.0.0-rc.1"}, want: "v2.0.0-rc.1.0.20260102020405-0123456789ab"},
		{name: "non-version tags ignored", atHead: []string{"vnext", "v1.2.3+meta"}, reachable: []string{"v1", "v1.2.3+meta", "vnext"}, want: "v0.0.0-20260102020405-0123456789ab"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := imagebuild.GitState{Commit: commit, CommitTime: at, TagsAtHead: tc.atHead, ReachableTags: tc.reachable, Dirty: tc.dirty}

			got, err := g.Version()
			if err != nil {
				t.Fatal(err)
			}

			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}

			if strings.Contains(got, "+") {
				t.Errorf("%s holds a '+'", got)
			}
		})
	}

	if _, err := (imagebuild.GitState{Commit: "abc"}).Version(); err == nil {
		t.Error("a short commit was accepted")
	}
}

func TestVersionOfGitWorkTree(t *testing.T) {
	dir := t.TempDir()

	git := func(args ...string) {
		t.Helper()

		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(),
			"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_SYSTEM=/dev/null",
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com",
			"GIT_AUTHOR_DATE=2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE=2026-01-02T03:04:05Z")

		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v: %s", args, err, out)
		}
	}

	commit := func() string {
		t.Helper()

		g, err := imagebuild.ReadGitState(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}

		return g.Commit[:12]
	}

	version := func() string {
		t.Helper()

		g, err := imagebuild.ReadGitState(context.Background(), dir)
		if err != nil {
			t.Fatal(err)
		}

		v, err := g.Version()
		if err != nil {
			t.Fatal(err)
		}

		return v
	}

	if _, err := imagebuild.ReadGitState(context.Background(), dir); err == nil {
		t.Fatal("a directory outside git has a git state")
	}

	git("init", "-q")
	git("commit", "-q", "--allow-empty", "-m", "first")

	if got, want := version(), "v0.0.0-20260102030405-"+commit(); got != want {
		t.Errorf("fresh clone without tags: %s, want %s", got, want)
	}

	git("tag", "v0.3.1")

	if got := version(); got != "v0.3.1" {
		t.Errorf("on the tag: %s", got)
	}

	if err := os.WriteFile(filepath.Join(dir, "new.go"), []byte("package x\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	if got := version(); got != "v0.3.1-dirty" {
		t.Errorf("untracked file: %s", got)
	}

	git("add", "new.go")
	git("commit", "-q", "-m", "second")

	if got, want := version(), "v0.3.2-0.20260102030405-"+commit(); got != want {
		t.Errorf("after the tag: %s, want %s", got, want)
	}
}
