package imagebuild

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/blang/semver/v4"
)

// CheckVersion accepts what the extension's version must be everywhere it
// appears (manifest, --version, image tag): "v" and a semantic version with
// an optional pre-release and no build metadata, since OCI tags forbid '+'.
func CheckVersion(v string) error {
	if !strings.HasPrefix(v, "v") {
		return fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH[-PRERELEASE], with the leading v", v)
	}

	parsed, err := semver.Parse(strings.TrimPrefix(v, "v"))
	if err != nil {
		return fmt.Errorf("version %q: want vMAJOR.MINOR.PATCH[-PRERELEASE]: %w", v, err)
	}

	if len(parsed.Build) != 0 {
		return fmt.Errorf("version %q: build metadata (+...) is not allowed, OCI tags forbid '+'", v)
	}

	return nil
}

// GitState is what the version is derived from: the commit and its tags,
// never the time of the build.
type GitState struct {
	Commit     string    // full hex hash of HEAD
	CommitTime time.Time // committer time of HEAD
	// TagsAtHead are the tags pointing at HEAD; ReachableTags those that
	// are HEAD's ancestors (HEAD's own included). Tags that are not
	// versions are ignored.
	TagsAtHead    []string
	ReachableTags []string
	Dirty         bool // tracked files changed or untracked files present
}

var hexCommit = regexp.MustCompile(`^[0-9a-f]{12,}$`)

// Version derives the version the way Go derives module pseudo-versions, so
// that versions sort in commit order and are valid OCI tags:
//
//   - HEAD tagged vX.Y.Z: that tag (the highest, if several);
//   - after a tag vX.Y.Z: vX.Y.(Z+1)-0.<commit time>-<12 hex>;
//   - after a pre-release tag vX.Y.Z-pre: vX.Y.Z-pre.0.<commit time>-<12 hex>;
//   - no tag: v0.0.0-<commit time>-<12 hex>;
//
// with -dirty appended when the work tree has changes.
func (g GitState) Version() (string, error) {
	if !hexCommit.MatchString(g.Commit) {
		return "", fmt.Errorf("derive version: commit %q is not a hex hash", g.Commit)
	}

	var v string

	if exact, ok := highestVersion(g.TagsAtHead); ok {
		v = "v" + exact.String()
	} else {
		pseudo := g.CommitTime.UTC().Format("20060102150405") + "-" + g.Commit[:12]

		base, ok := highestVersion(g.ReachableTags)

		switch {
		case !ok:
			v = "v0.0.0-" + pseudo
		case len(base.Pre) == 0:
			v = fmt.Sprintf("v%d.%d.%d-0.%s", base.Major, base.Minor, base.Patch+1, pseudo)
		default:
			v = "v" + base.String() + ".0." + pseudo
		}
	}

	if g.Dirty {
		v += "-dirty"
	}

	if err := CheckVersion(v); err != nil {
		return "", fmt.Errorf("derive version: %w", err)
	}

	return v, nil
}

func highestVersion(tags []string) (semver.Version, bool) {
	var (
		best  semver.Version
		found bool
	)

	for _, t := range tags {
		if CheckVersion(t) != nil {
			continue
		}

		v := semver.MustParse(strings.TrimPrefix(t, "v"))
		if !found || v.GT(best) {
			best, found = v, true
		}
	}

	return best, found
}

// ReadGitState reads the state of the git work tree at dir ("" for the
// current directory).
func ReadGitState(ctx context.Context, dir string) (GitState, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir

		var stderr bytes.Buffer
		cmd.Stderr = &stderr

		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}

		return strings.TrimSpace(string(out)), nil
	}

	var g GitState

	head, err := git("show", "-s", "--format=%H %ct", "HEAD")
	if err != nil {
		return g, fmt.Errorf("read commit (not a git checkout? give the version by hand): %w", err)
	}

	commit, secs, _ := strings.Cut(head, " ")

	unix, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return g, fmt.Errorf("read commit time %q: %w", secs, err)
	}

	g.Commit, g.CommitTime = commit, time.Unix(unix, 0).UTC()

	at, err := git("tag", "--points-at", "HEAD", "--list", "v*")
	if err != nil {
		return g, err
	}

	reachable, err := git("tag", "--merged", "HEAD", "--list", "v*")
	if err != nil {
		return g, err
	}

	g.TagsAtHead, g.ReachableTags = strings.Fields(at), strings.Fields(reachable)

	// Untracked files count, as they do for the vcs.modified that go build
	// stamps into the binary.
	status, err := git("status", "--porcelain")
	if err != nil {
		return g, err
	}

	g.Dirty = status != ""

	return g, nil
}
