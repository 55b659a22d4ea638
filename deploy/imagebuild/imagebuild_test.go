package imagebuild_test

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"io"
	"io/fs"
	"log"
	"maps"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blang/semver/v4"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/siderolabs/talos/pkg/machinery/extensions"
	"go.yaml.in/yaml/v4"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/deploy"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/deploy/imagebuild"
)

// useRealDaemon selects the daemon's real main package. Set it to false to
// run these tests with standInDaemon, a tiny main built from a temporary
// module: the image code does not care what the binary does, only that it is
// a static ELF executable for the right architecture.
const useRealDaemon = true

const standInDaemon = `package main

// Stand-in for the daemon while cmd/kommodity-autobootstrap-extension is not
// there yet; built only by imagebuild tests.

var version string

func main() { println("kommodity-autobootstrap stand-in", version) }
`

var (
	arches  = []string{"amd64", "arm64"}
	elfArch = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	epoch   = time.Unix(1_700_000_000, 0).UTC()
)

const (
	testVersion  = "v1.2.3-test"
	testRevision = "0123456789abcdef0123456789abcdef01234567"
)

// buildDaemon cross-compiles the daemon (or the stand-in) for every arch into
// dir with imagebuild.GoBuild, the code path `make image` uses.
func buildDaemon(t *testing.T, dir, version string) map[string][]byte {
	t.Helper()

	modDir, pkg := repoRoot(t), imagebuild.MainPackage

	if !useRealDaemon {
		modDir, pkg = filepath.Join(dir, "standin"), "."
		if err := os.MkdirAll(modDir, 0o755); err != nil {
			t.Fatal(err)
		}

		if err := os.WriteFile(filepath.Join(modDir, "go.mod"), []byte("module standin\n\ngo 1.26\n"), 0o644); err != nil {
			t.Fatal(err)
		}

		if err := os.WriteFile(filepath.Join(modDir, "main.go"), []byte(standInDaemon), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	out := map[string][]byte{}

	for _, arch := range arches {
		bin := filepath.Join(dir, arch, imagebuild.BinaryName)

		b := imagebuild.GoBuild{Dir: modDir, Package: pkg, Arch: arch, Version: version, Output: bin}
		if err := b.Run(context.Background()); err != nil {
			t.Fatal(err)
		}

		raw, err := os.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}

		out[arch] = raw
	}

	return out
}

func repoRoot(t *testing.T) string {
	t.Helper()

	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}

	return root
}

// The cross-builds dominate the test time: build once, share.
var (
	sharedOnce     sync.Once
	sharedDir      string
	sharedBinaries map[string][]byte
)

func TestMain(m *testing.M) {
	code := m.Run()

	if sharedDir != "" {
		os.RemoveAll(sharedDir) //nolint:errcheck // temp files
	}

	os.Exit(code)
}

func binaries(t *testing.T) map[string][]byte {
	t.Helper()

	sharedOnce.Do(func() {
		dir, err := os.MkdirTemp("", "imagebuild-test-")
		if err != nil {
			t.Fatal(err)
		}

		sharedDir = dir
		sharedBinaries = buildDaemon(t, dir, testVersion)
	})

	if sharedBinaries == nil {
		t.Fatal("daemon build failed earlier")
	}

	return sharedBinaries
}

func input(bins map[string][]byte, version string, created time.Time) imagebuild.Input {
	in := imagebuild.Input{
		Manifest:    deploy.Manifest,
		ServiceSpec: deploy.ServiceSpec,
		Version:     version,
		Revision:    testRevision,
		Created:     created,
	}

	for _, arch := range arches {
		in.Platforms = append(in.Platforms, imagebuild.Platform{Arch: arch, Binary: bins[arch]})
	}

	return in
}

// writeImage builds the index and writes layout + archive, as make image does.
func writeImage(t *testing.T, in imagebuild.Input) (v1.ImageIndex, string, string) {
	t.Helper()

	idx, err := imagebuild.Index(in)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	layoutDir, archive := filepath.Join(dir, "image"), filepath.Join(dir, "image.tar")

	if err := imagebuild.WriteLayout(layoutDir, idx); err != nil {
		t.Fatal(err)
	}

	if err := imagebuild.WriteArchive(archive, layoutDir, in.Created); err != nil {
		t.Fatal(err)
	}

	return idx, layoutDir, archive
}

type entry struct {
	hdr     *tar.Header
	content []byte
}

func layerEntries(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()

	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}

	if len(layers) != 1 {
		t.Fatalf("want 1 layer, got %d", len(layers))
	}

	mt, err := layers[0].MediaType()
	if err != nil || mt != types.OCILayer {
		t.Fatalf("layer media type %q (%v), want %q", mt, err, types.OCILayer)
	}

	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close() //nolint:errcheck

	return readTar(t, rc)
}

func readTar(t *testing.T, r io.Reader) map[string]entry {
	t.Helper()

	out := map[string]entry{}
	tr := tar.NewReader(r)

	var names []string

	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}

		if err != nil {
			t.Fatal(err)
		}

		content, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}

		names = append(names, hdr.Name)
		out[hdr.Name] = entry{hdr: hdr, content: content}
	}

	if !sort.StringsAreSorted(names) {
		t.Errorf("tar entries are not sorted: %v", names)
	}

	return out
}

// unpack writes a layer's entries to dir the way an extractor would, with
// the modes from the archive.
func unpack(t *testing.T, entries map[string]entry, dir string) {
	t.Helper()

	names := make([]string, 0, len(entries))
	for n := range entries {
		names = append(names, n)
	}

	sort.Strings(names)

	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	for _, n := range names {
		e := entries[n]
		p := filepath.Join(dir, filepath.FromSlash(strings.TrimSuffix(n, "/")))

		switch e.hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, fs.FileMode(e.hdr.Mode)); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			if err := os.WriteFile(p, e.content, fs.FileMode(e.hdr.Mode)); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("unexpected entry type %v for %s", e.hdr.Typeflag, n)
		}
	}
}

// readBack opens the layout the way the Talos imager does for an `ociPath`
// input (pkg/imager/profile: index.json entries with a linux platform) and
// returns each arch's image.
func readBack(t *testing.T, layoutDir string) (v1.Hash, map[string]v1.Image) {
	t.Helper()

	p, err := layout.FromPath(layoutDir)
	if err != nil {
		t.Fatal(err)
	}

	idx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}

	digest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}

	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}

	checkAnnotations(t, "index", im.Annotations)

	imgs := map[string]v1.Image{}

	for _, desc := range im.Manifests {
		if desc.Platform == nil || desc.Platform.OS != "linux" {
			t.Fatalf("descriptor %s without a linux platform: %+v", desc.Digest, desc.Platform)
		}

		if desc.MediaType != types.OCIManifestSchema1 {
			t.Errorf("descriptor %s media type %q", desc.Digest, desc.MediaType)
		}

		img, err := p.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}

		imgs[desc.Platform.Architecture] = img
	}

	return digest, imgs
}

func TestImageReadBack(t *testing.T) {
	bins := binaries(t)
	in := input(bins, testVersion, epoch)

	idx, layoutDir, archive := writeImage(t, in)

	want, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}

	for name, dir := range map[string]string{"layout": layoutDir, "archive": untarLayout(t, archive)} {
		t.Run(name, func(t *testing.T) {
			got, imgs := readBack(t, dir)
			if got != want {
				t.Errorf("index digest %s, built %s", got, want)
			}

			if len(imgs) != len(arches) {
				t.Fatalf("platforms %v, want %v", keys(imgs), arches)
			}

			for _, arch := range arches {
				img := imgs[arch]
				if img == nil {
					t.Fatalf("no image for linux/%s", arch)
				}

				checkImage(t, img, arch, bins[arch])
			}
		})
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}

	sort.Strings(out)

	return out
}

func untarLayout(t *testing.T, archive string) string {
	t.Helper()

	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() //nolint:errcheck

	entries := readTar(t, f)
	for n, e := range entries {
		if e.hdr.Uid != 0 || e.hdr.Gid != 0 || !e.hdr.ModTime.Equal(epoch) {
			t.Errorf("archive entry %s: uid %d gid %d time %s", n, e.hdr.Uid, e.hdr.Gid, e.hdr.ModTime)
		}
	}

	for _, required := range []string{"oci-layout", "index.json"} {
		if _, ok := entries[required]; !ok {
			t.Fatalf("archive lacks %s", required)
		}
	}

	dir := t.TempDir()
	unpack(t, entries, dir)

	return dir
}

// checkAnnotations: the provenance every manifest and config carries.
func checkAnnotations(t *testing.T, what string, got map[string]string) {
	t.Helper()

	want := map[string]string{
		"org.opencontainers.image.title":       "kommodity-autobootstrap",
		"org.opencontainers.image.version":     testVersion,
		"org.opencontainers.image.created":     "2023-11-14T22:13:20Z", // epoch
		"org.opencontainers.image.source":      "https://github.com/kommodity-io/kommodity-autobootstrap-extension",
		"org.opencontainers.image.revision":    testRevision,
		"org.opencontainers.image.licenses":    "Apache-2.0",
		"org.opencontainers.image.description": imagebuild.Description,
	}

	if !maps.Equal(got, want) {
		t.Errorf("%s annotations\n got %v\nwant %v", what, got, want)
	}
}

func checkImage(t *testing.T, img v1.Image, arch string, binary []byte) {
	t.Helper()

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}

	manifest, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}

	checkAnnotations(t, arch+" manifest", manifest.Annotations)
	checkAnnotations(t, arch+" config labels", cfg.Config.Labels)

	if cfg.OS != "linux" || cfg.Architecture != arch || !cfg.Created.Time.Equal(epoch) {
		t.Errorf("config: os %q arch %q created %s, want linux %s %s", cfg.OS, cfg.Architecture, cfg.Created.Time, arch, epoch)
	}

	entries := layerEntries(t, img)

	wantModes := map[string]int64{
		"manifest.yaml":                    0o644,
		"rootfs/":                          0o755,
		"rootfs/usr/":                      0o755,
		"rootfs/usr/local/":                0o755,
		"rootfs/usr/local/etc/":            0o755,
		"rootfs/usr/local/etc/containers/": 0o755,
		"rootfs/usr/local/etc/containers/kommodity-autobootstrap.yaml": 0o644,
		"rootfs/usr/local/lib/":                                    0o755,
		"rootfs/usr/local/lib/containers/":                         0o755,
		"rootfs/usr/local/lib/containers/kommodity-autobootstrap/": 0o755,
		"rootfs/usr/local/lib/containers/kommodity-autobootstrap/kommodity-autobootstrap-extension": 0o755,
		"rootfs/usr/local/share/":                                       0o755,
		"rootfs/usr/local/share/spdx/":                                  0o755,
		"rootfs/usr/local/share/spdx/kommodity-autobootstrap.spdx.json": 0o644,
	}

	if got, want := keys(entries), keys(wantModes); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("layer entries\n got %v\nwant %v", got, want)
	}

	for n, e := range entries {
		if e.hdr.Mode != wantModes[n] {
			t.Errorf("%s: mode %o, want %o", n, e.hdr.Mode, wantModes[n])
		}

		if e.hdr.Uid != 0 || e.hdr.Gid != 0 || e.hdr.Uname != "" || e.hdr.Gname != "" {
			t.Errorf("%s: owner %d:%d (%q:%q), want 0:0", n, e.hdr.Uid, e.hdr.Gid, e.hdr.Uname, e.hdr.Gname)
		}

		if !e.hdr.ModTime.Equal(epoch) {
			t.Errorf("%s: mtime %s, want %s", n, e.hdr.ModTime, epoch)
		}
	}

	bin := entries[imagebuild.BinaryPath].content
	if !bytes.Equal(bin, binary) {
		t.Errorf("binary in image differs from the built one (%d vs %d bytes)", len(bin), len(binary))
	}

	ef, err := elf.NewFile(bytes.NewReader(bin))
	if err != nil {
		t.Fatalf("binary for %s is not ELF: %v", arch, err)
	}

	if ef.Machine != elfArch[arch] || ef.Class != elf.ELFCLASS64 {
		t.Errorf("binary for %s: machine %s class %s, want %s", arch, ef.Machine, ef.Class, elfArch[arch])
	}

	// Static: no program interpreter (CGO_ENABLED=0).
	for _, prog := range ef.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Errorf("binary for %s is dynamically linked", arch)
		}
	}

	var m extensions.Manifest
	if err := yaml.Unmarshal(entries[imagebuild.ManifestPath].content, &m); err != nil {
		t.Fatal(err)
	}

	if m.Metadata.Version != testVersion {
		t.Errorf("manifest version %q, want %q", m.Metadata.Version, testVersion)
	}

	checkSBOM(t, arch, entries[imagebuild.SBOMPath].content, bin)

	if !bytes.Equal(entries[imagebuild.ServiceSpecPath].content, deploy.ServiceSpec) {
		t.Error("service spec in image differs from deploy/kommodity-autobootstrap.yaml")
	}

	// Load and validate the unpacked tree with Talos's own code.
	dir := filepath.Join(t.TempDir(), imagebuild.ExtensionName)
	unpack(t, entries, dir)
	validateTree(t, dir)

	// machined runs Entrypoint inside the container root: it must be the
	// executable binary there.
	entrypoint := filepath.Join(dir, filepath.FromSlash(imagebuild.ContainerRoot), "kommodity-autobootstrap-extension")

	info, err := os.Stat(entrypoint)
	if err != nil || info.Mode().Perm()&0o111 == 0 {
		t.Errorf("entrypoint not executable in container root: %v %v", info, err)
	}

	// The binary's --version agrees with the manifest (run where this
	// machine can; both are built from one version value by construction).
	if arch == runtime.GOARCH && runtime.GOOS == "linux" && useRealDaemon {
		out, err := exec.Command(entrypoint, "--version").Output()
		if err != nil || strings.TrimSpace(string(out)) != m.Metadata.Version {
			t.Errorf("%s --version: %q %v, manifest says %q", arch, out, err, m.Metadata.Version)
		}
	}
}

// Talos versions the manifest claims, and ones it must refuse (no
// ExtensionServiceConfig and no "configuration" dependency before v1.7.0).
var (
	supportedTalos   = []string{"v1.7.0", "v1.9.0", "v1.11.0", "v1.12.6", "v1.13.0"}
	unsupportedTalos = []string{"v1.5.0", "v1.6.0", "v1.6.8"}
)

func validateTree(t *testing.T, dir string) {
	t.Helper()

	ext, err := extensions.Load(dir)
	if err != nil {
		t.Fatalf("extensions.Load: %v", err)
	}

	if ext.Manifest.Metadata.Name != imagebuild.ExtensionName {
		t.Errorf("extension name %q", ext.Manifest.Metadata.Name)
	}

	for _, v := range supportedTalos {
		ver := semver.MustParse(strings.TrimPrefix(v, "v"))
		if err := ext.Validate(extensions.WithValidateConstraints(), extensions.WithValidateContents(), extensions.WithTalosVersion(&ver)); err != nil {
			t.Errorf("Talos %s refuses the extension: %v", v, err)
		}
	}

	for _, v := range unsupportedTalos {
		ver := semver.MustParse(strings.TrimPrefix(v, "v"))
		if err := ext.Validate(extensions.WithValidateConstraints(), extensions.WithTalosVersion(&ver)); err == nil {
			t.Errorf("Talos %s accepts the extension, but lacks ExtensionServiceConfig", v)
		}
	}
}

func TestReproducible(t *testing.T) {
	// Two independent cross-builds, back to back (not the shared one: in a
	// work tree shared with other engineers, sources may change meanwhile).
	first := buildDaemon(t, t.TempDir(), testVersion)
	second := buildDaemon(t, t.TempDir(), testVersion)
	for _, arch := range arches {
		if !bytes.Equal(first[arch], second[arch]) {
			// In a shared work tree this also fires when someone edits the
			// daemon's sources between the two builds.
			t.Errorf("two builds of the linux/%s binary differ (sources changed in between?)", arch)
		}
	}

	idx1, _, archive1 := writeImage(t, input(first, testVersion, epoch))
	idx2, _, archive2 := writeImage(t, input(second, testVersion, epoch))

	d1, err := idx1.Digest()
	if err != nil {
		t.Fatal(err)
	}

	d2, err := idx2.Digest()
	if err != nil {
		t.Fatal(err)
	}

	if d1 != d2 {
		t.Errorf("two builds, two digests: %s %s", d1, d2)
	}

	a1, err := os.ReadFile(archive1)
	if err != nil {
		t.Fatal(err)
	}

	a2, err := os.ReadFile(archive2)
	if err != nil {
		t.Fatal(err)
	}

	if !bytes.Equal(a1, a2) {
		t.Error("two builds, two different image.tar files")
	}

	// The inputs do reach the digest.
	otherRevision := input(first, testVersion, epoch)
	otherRevision.Revision = strings.Repeat("f", 40)

	for what, in := range map[string]imagebuild.Input{
		"SOURCE_DATE_EPOCH": input(first, testVersion, epoch.Add(time.Second)),
		"version":           input(first, testVersion+"-other", epoch),
		"revision":          otherRevision,
	} {
		idx, err := imagebuild.Index(in)
		if err != nil {
			t.Fatal(err)
		}

		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}

		if d == d1 {
			t.Errorf("changing %s did not change the digest", what)
		}
	}
}

func TestPushToLocalRegistry(t *testing.T) {
	bins := binaries(t)

	idx, err := imagebuild.Index(input(bins, testVersion, epoch))
	if err != nil {
		t.Fatal(err)
	}

	// In-process registry on 127.0.0.1 (httptest listens on loopback only).
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()

	host := strings.TrimPrefix(srv.URL, "http://")
	ref := host + "/kommodity-io/kommodity-autobootstrap-extension:" + testVersion

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	pushed, err := imagebuild.Push(ctx, idx, ref)
	if err != nil {
		t.Fatal(err)
	}

	want, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}

	if pushed.DigestStr() != want.String() {
		t.Errorf("Push returned %s, want digest %s", pushed, want)
	}

	tag, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}

	got, err := remote.Index(tag, remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}

	gotDigest, err := got.Digest()
	if err != nil {
		t.Fatal(err)
	}

	if gotDigest != want {
		t.Errorf("registry serves %s for the tag, pushed %s", gotDigest, want)
	}

	// A pull for arm64, as the imager does for an arm64 image.
	img, err := remote.Image(tag, remote.WithContext(ctx), remote.WithPlatform(v1.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}

	if cfg.Architecture != "arm64" {
		t.Errorf("pulled linux/arm64, got %s", cfg.Architecture)
	}

	if _, err := imagebuild.Push(ctx, idx, "not a reference"); err == nil {
		t.Error("Push accepted an invalid reference")
	}
}

func TestIndexRefusesBadInput(t *testing.T) {
	bins := binaries(t)

	cases := map[string]imagebuild.Input{
		"no platforms":   {Manifest: deploy.Manifest, ServiceSpec: deploy.ServiceSpec, Version: testVersion},
		"empty version":  input(bins, "", epoch),
		"no revision":    func() imagebuild.Input { in := input(bins, testVersion, epoch); in.Revision = ""; return in }(),
		"short revision": func() imagebuild.Input { in := input(bins, testVersion, epoch); in.Revision = "0123456"; return in }(),
		"empty binary":   {Manifest: deploy.Manifest, ServiceSpec: deploy.ServiceSpec, Version: testVersion, Platforms: []imagebuild.Platform{{Arch: "amd64"}}},
		"twice the arch": {Manifest: deploy.Manifest, ServiceSpec: deploy.ServiceSpec, Version: testVersion, Platforms: []imagebuild.Platform{{Arch: "amd64", Binary: bins["amd64"]}, {Arch: "amd64", Binary: bins["amd64"]}}},
		"bad spec":       {Manifest: deploy.Manifest, ServiceSpec: []byte("name: kommodity-autobootstrap\n"), Version: testVersion, Platforms: []imagebuild.Platform{{Arch: "amd64", Binary: bins["amd64"]}}},
	}

	for name, in := range cases {
		if _, err := imagebuild.Index(in); err == nil {
			t.Errorf("%s: Index succeeded", name)
		}
	}
}

func TestStampManifest(t *testing.T) {
	out, err := imagebuild.StampManifest(deploy.Manifest, "v9.9.9")
	if err != nil {
		t.Fatal(err)
	}

	var m extensions.Manifest
	if err := yaml.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}

	var orig extensions.Manifest
	if err := yaml.Unmarshal(deploy.Manifest, &orig); err != nil {
		t.Fatal(err)
	}

	orig.Metadata.Version = "v9.9.9"
	if m != orig {
		t.Errorf("stamping changed more than the version:\n got %+v\nwant %+v", m, orig)
	}

	for name, raw := range map[string]string{
		"wrong name":        strings.Replace(string(deploy.Manifest), "name: kommodity-autobootstrap", "name: other", 1),
		"wrong api version": strings.Replace(string(deploy.Manifest), "version: v1alpha1", "version: v1alpha2", 1),
		"not yaml":          "version: [",
	} {
		if _, err := imagebuild.StampManifest([]byte(raw), "v1"); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}

	if _, err := imagebuild.StampManifest(deploy.Manifest, ""); err == nil {
		t.Error("empty version accepted")
	}
}

func TestWriteDirMatchesImage(t *testing.T) {
	bins := binaries(t)

	in := input(bins, testVersion, epoch)

	tree, err := imagebuild.NewTree(in, imagebuild.Platform{Arch: "arm64", Binary: bins["arm64"]})
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), imagebuild.ExtensionName)
	if err := tree.WriteDir(dir, epoch); err != nil {
		t.Fatal(err)
	}

	validateTree(t, dir)

	for _, f := range tree {
		info, err := os.Stat(filepath.Join(dir, filepath.FromSlash(f.Path)))
		if err != nil {
			t.Fatal(err)
		}

		if info.Mode().Perm() != f.Mode || !info.ModTime().Equal(epoch) {
			t.Errorf("%s: mode %v time %s, want %v %s", f.Path, info.Mode().Perm(), info.ModTime(), f.Mode, epoch)
		}

		if path.Base(f.Path) == imagebuild.BinaryName && f.Mode != 0o755 {
			t.Errorf("binary mode %v", f.Mode)
		}
	}
}
