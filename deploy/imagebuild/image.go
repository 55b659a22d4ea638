package imagebuild

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"regexp"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Provenance of the image, fixed here rather than read from the checkout
// (a fork's `git remote` is not where the project lives).
const (
	// SourceURL is the project's repository.
	SourceURL = "https://github.com/kommodity-io/kommodity-autobootstrap-extension"
	// License is the project's license, as an SPDX identifier.
	License = "Apache-2.0"
	// Description is the one-line summary of the extension.
	Description = "Talos system extension that bootstraps etcd on a control plane without an operator"
)

// Annotation keys (OCI image spec, pre-defined annotations).
const (
	AnnotationTitle       = "org.opencontainers.image.title"
	AnnotationVersion     = "org.opencontainers.image.version"
	AnnotationCreated     = "org.opencontainers.image.created"
	AnnotationSource      = "org.opencontainers.image.source"
	AnnotationRevision    = "org.opencontainers.image.revision"
	AnnotationLicenses    = "org.opencontainers.image.licenses"
	AnnotationDescription = "org.opencontainers.image.description"
)

var commitHash = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// Annotations are the OCI annotations of the index and of every image
// manifest (and the labels of every image config).
func (in Input) Annotations() map[string]string {
	return map[string]string{
		AnnotationTitle:       ExtensionName,
		AnnotationVersion:     in.Version,
		AnnotationCreated:     in.Created.UTC().Truncate(time.Second).Format(time.RFC3339),
		AnnotationSource:      SourceURL,
		AnnotationRevision:    in.Revision,
		AnnotationLicenses:    License,
		AnnotationDescription: Description,
	}
}

// Platform is one linux architecture of the index, with the daemon binary
// built for it.
type Platform struct {
	Arch   string // GOARCH: amd64, arm64
	Binary []byte
}

// Input is everything an image build depends on.
type Input struct {
	Manifest    []byte // unstamped manifest.yaml
	ServiceSpec []byte
	Version     string
	// Revision is the full hash of the commit built.
	Revision string
	// Created is the one timestamp written anywhere (file times, image
	// config, annotations): SOURCE_DATE_EPOCH.
	Created   time.Time
	Platforms []Platform
}

// Layer packs a tree as one gzip-compressed OCI layer: entries sorted,
// directories explicit, owner root:root, every time set to mtime.
func Layer(t Tree, mtime time.Time) (v1.Layer, error) {
	var buf bytes.Buffer

	tw := tar.NewWriter(&buf)
	mtime = mtime.UTC().Truncate(time.Second)

	type entry struct {
		path string
		file *File
	}

	var entries []entry
	for _, d := range t.dirs() {
		entries = append(entries, entry{path: d})
	}

	for i := range t {
		entries = append(entries, entry{path: t[i].Path, file: &t[i]})
	}

	// Byte order puts every directory before its contents (a prefix sorts
	// first) and fixes the order for reproducibility.
	sort.Slice(entries, func(i, j int) bool { return entries[i].path < entries[j].path })

	for _, e := range entries {
		hdr := &tar.Header{
			Name:    e.path + "/",
			Mode:    0o755,
			ModTime: mtime,
			Format:  tar.FormatPAX,
		}

		if e.file == nil {
			hdr.Typeflag = tar.TypeDir
		} else {
			hdr.Name = e.path
			hdr.Typeflag = tar.TypeReg
			hdr.Mode = int64(e.file.Mode.Perm())
			hdr.Size = int64(len(e.file.Content))
		}

		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("tar header %s: %w", e.path, err)
		}

		if e.file != nil {
			if _, err := tw.Write(e.file.Content); err != nil {
				return nil, fmt.Errorf("tar content %s: %w", e.path, err)
			}
		}
	}

	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close layer tar: %w", err)
	}

	raw := buf.Bytes()

	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("build layer: %w", err)
	}

	return layer, nil
}

// Image builds one platform's image: a single layer holding the extension
// tree, an OCI manifest and a config whose only time is in.Created.
func Image(in Input, p Platform) (v1.Image, error) {
	tree, err := NewTree(in, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Arch, err)
	}

	layer, err := Layer(tree, in.Created)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Arch, err)
	}

	created := v1.Time{Time: in.Created.UTC().Truncate(time.Second)}

	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)

	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   created,
			CreatedBy: "kommodity-autobootstrap build-image " + in.Version,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: append layer: %w", p.Arch, err)
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("%s: read config: %w", p.Arch, err)
	}

	cfg = cfg.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = p.Arch
	cfg.Created = created
	cfg.Config.Labels = in.Annotations()

	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: set config: %w", p.Arch, err)
	}

	annotated, ok := mutate.Annotations(img, in.Annotations()).(v1.Image)
	if !ok {
		return nil, fmt.Errorf("%s: annotations changed the image type", p.Arch)
	}

	return annotated, nil
}

// Index builds every platform's image and gathers them in an OCI index whose
// descriptors carry the platform, as the Talos imager's OCI-layout reader and
// registries' platform selection expect.
func Index(in Input) (v1.ImageIndex, error) {
	if len(in.Platforms) == 0 {
		return nil, fmt.Errorf("build index: no platforms")
	}

	if !commitHash.MatchString(in.Revision) {
		return nil, fmt.Errorf("build index: revision %q is not a full commit hash", in.Revision)
	}

	seen := map[string]bool{}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)

	for _, p := range in.Platforms {
		if seen[p.Arch] {
			return nil, fmt.Errorf("build index: platform linux/%s given twice", p.Arch)
		}

		seen[p.Arch] = true

		img, err := Image(in, p)
		if err != nil {
			return nil, fmt.Errorf("build index: %w", err)
		}

		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: img,
			Descriptor: v1.Descriptor{
				MediaType: types.OCIManifestSchema1,
				Platform:  &v1.Platform{OS: "linux", Architecture: p.Arch},
			},
		})
	}

	annotated, ok := mutate.Annotations(idx, in.Annotations()).(v1.ImageIndex)
	if !ok {
		return nil, fmt.Errorf("build index: annotations changed the index type")
	}

	return annotated, nil
}

// PulledSize is what a pull of img transfers: manifest, config and the
// compressed layers.
func PulledSize(img v1.Image) (int64, error) {
	m, err := img.Manifest()
	if err != nil {
		return 0, fmt.Errorf("image manifest: %w", err)
	}

	raw, err := img.RawManifest()
	if err != nil {
		return 0, fmt.Errorf("raw image manifest: %w", err)
	}

	size := int64(len(raw)) + m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}

	return size, nil
}
