// Package imagebuild builds the Talos system-extension image of the daemon
// without a Docker engine: one image per platform, gathered in an OCI index,
// written as an OCI image layout and a tar archive of it, and pushed with
// go-containerregistry. Everything that ends up in the image is fixed by the
// inputs (files, version, timestamp), so two builds give one digest.
package imagebuild

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/extensions"
	"github.com/siderolabs/talos/pkg/machinery/extensions/services"
	"go.yaml.in/yaml/v4"
)

// Names fixed by Talos's extension layout.
const (
	// ExtensionName is the extension's and the service's name (ext-NAME).
	ExtensionName = "kommodity-autobootstrap"
	// BinaryName is the daemon's executable.
	BinaryName = "kommodity-autobootstrap-extension"

	// ManifestPath is where Talos looks for the extension manifest.
	ManifestPath = "manifest.yaml"
	// ServiceSpecPath is where machined looks for extension service specs.
	ServiceSpecPath = "rootfs/usr/local/etc/containers/" + ExtensionName + ".yaml"
	// ContainerRoot is the service container's root directory.
	ContainerRoot = "rootfs/usr/local/lib/containers/" + ExtensionName
	// BinaryPath is the daemon inside the image.
	BinaryPath = ContainerRoot + "/" + BinaryName
)

// File is one regular file of the image, by slash-separated relative path.
type File struct {
	Path    string
	Mode    fs.FileMode
	Content []byte
}

// Tree is the content of one platform's image, without directories: they are
// derived from the file paths.
type Tree []File

// NewTree assembles one platform's files: the stamped manifest, the service
// spec, the daemon binary and the SPDX document of that binary. It refuses
// inputs Talos would refuse later.
func NewTree(in Input, p Platform) (Tree, error) {
	stamped, err := StampManifest(in.Manifest, in.Version)
	if err != nil {
		return nil, err
	}

	if err := CheckServiceSpec(in.ServiceSpec); err != nil {
		return nil, err
	}

	if len(p.Binary) == 0 {
		return nil, errors.New("daemon binary is empty")
	}

	sbom, err := SBOM(in, p)
	if err != nil {
		return nil, err
	}

	return Tree{
		{Path: ManifestPath, Mode: 0o644, Content: stamped},
		{Path: ServiceSpecPath, Mode: 0o644, Content: in.ServiceSpec},
		{Path: BinaryPath, Mode: 0o755, Content: p.Binary},
		{Path: SBOMPath, Mode: 0o644, Content: sbom},
	}, nil
}

// StampManifest decodes an extension manifest the way Talos does, sets its
// metadata.version and encodes it again.
func StampManifest(raw []byte, version string) ([]byte, error) {
	if version == "" {
		return nil, errors.New("stamp manifest: version is empty")
	}

	var m extensions.Manifest

	if err := yaml.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("decode extension manifest: %w", err)
	}

	if m.Version != "v1alpha1" {
		return nil, fmt.Errorf("extension manifest: unsupported version %q (Talos reads v1alpha1)", m.Version)
	}

	if m.Metadata.Name != ExtensionName {
		return nil, fmt.Errorf("extension manifest: name %q, want %q", m.Metadata.Name, ExtensionName)
	}

	m.Metadata.Version = version

	out, err := yaml.Marshal(&m)
	if err != nil {
		return nil, fmt.Errorf("encode extension manifest: %w", err)
	}

	return out, nil
}

// CheckServiceSpec decodes the service spec as machined does and runs the
// spec's own Validate. Unknown fields are refused as well: machined would
// silently ignore them, which hides typos such as a misspelt dependency.
func CheckServiceSpec(raw []byte) error {
	spec, err := DecodeServiceSpec(raw)
	if err != nil {
		return err
	}

	if err := spec.Validate(); err != nil {
		return fmt.Errorf("service spec: %w", err)
	}

	if spec.Name != ExtensionName {
		return fmt.Errorf("service spec: name %q, want %q", spec.Name, ExtensionName)
	}

	if spec.Container.Entrypoint != "/"+BinaryName {
		return fmt.Errorf("service spec: entrypoint %q, want %q", spec.Container.Entrypoint, "/"+BinaryName)
	}

	return nil
}

// DecodeServiceSpec decodes a service spec strictly (unknown fields refused).
func DecodeServiceSpec(raw []byte) (services.Spec, error) {
	var spec services.Spec

	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)

	if err := dec.Decode(&spec); err != nil {
		return spec, fmt.Errorf("decode service spec: %w", err)
	}

	return spec, nil
}

// dirs lists every parent directory of the tree's files, sorted, so that
// archives carry explicit, normalised directory entries.
func (t Tree) dirs() []string {
	seen := map[string]bool{}

	for _, f := range t {
		for d := path.Dir(f.Path); d != "." && !seen[d]; d = path.Dir(d) {
			seen[d] = true
		}
	}

	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}

	sort.Strings(out)

	return out
}

// WriteDir writes the tree under dir (which must not exist yet or be empty)
// with the tree's modes and the given modification time: the unpacked form
// Talos's extensions.Load reads, and what the Dockerfile copies.
func (t Tree) WriteDir(dir string, mtime time.Time) error {
	for _, d := range t.dirs() {
		p := filepath.Join(dir, filepath.FromSlash(d))
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
	}

	for _, f := range t {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.WriteFile(p, f.Content, f.Mode); err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}

		// WriteFile's mode is filtered by the umask.
		if err := os.Chmod(p, f.Mode); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}

	// Times last: creating children touches the directories.
	paths := append(t.dirs(), pathsOf(t)...)
	for _, rel := range paths {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			return fmt.Errorf("set time of %s: %w", p, err)
		}
	}

	return nil
}

func pathsOf(t Tree) []string {
	out := make([]string, 0, len(t))
	for _, f := range t {
		out = append(out, f.Path)
	}

	return out
}
