package imagebuild

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// MainPackage is the daemon's main package.
const MainPackage = "github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/kommodity-autobootstrap-extension"

// DefaultLDFlags are `make build`'s linker flags: no symbol table or DWARF
// (smaller image; panics still carry function names and lines) and the
// version in main.version.
func DefaultLDFlags(version string) string { return "-s -w -X main.version=" + version }

// GoBuild describes one cross-compilation of a main package, with the same
// settings as `make build`: static (CGO_ENABLED=0), -trimpath, and the
// version in main.version. Those settings also make the output depend only
// on the sources, the Go version and the flags.
type GoBuild struct {
	// Dir is the module directory the build runs in.
	Dir string
	// Package is the main package (import path or ./relative path).
	Package string
	Arch    string // GOARCH
	// Version goes into main.version, always: the binary's --version is
	// the version of the image it ships in.
	Version string
	// Output is the binary's path.
	Output string
}

// Run runs `go build` for linux/Arch.
func (b GoBuild) Run(ctx context.Context) error {
	if b.Arch == "" || b.Package == "" || b.Output == "" || b.Version == "" {
		return fmt.Errorf("go build: arch, package, output and version are required (got %q, %q, %q, %q)", b.Arch, b.Package, b.Output, b.Version)
	}

	cmd := exec.CommandContext(ctx, "go", "build",
		"-trimpath",
		"-ldflags", DefaultLDFlags(b.Version),
		"-o", b.Output,
		b.Package,
	)
	cmd.Dir = b.Dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+b.Arch)

	var stderr bytes.Buffer
	cmd.Stderr = &stderr

	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s for linux/%s: %w: %s", b.Package, b.Arch, err, strings.TrimSpace(stderr.String()))
	}

	return nil
}
