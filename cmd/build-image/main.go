// Command build-image builds the Talos system-extension image of the daemon
// without a Docker engine (see deploy/imagebuild): an OCI image layout with
// one image per platform, a tar archive of it, and optionally a push.
//
//	go run ./cmd/build-image                                       # _out/image, _out/image.tar
//	go run ./cmd/build-image -version v1.0.0 -push ghcr.io/org/x     # tag v1.0.0
//	go run ./cmd/build-image -version v1.0.0 -platforms linux/arm64 \
//	    -binary linux/arm64=bin/daemon -rootfs /out/tree              # unpacked tree (Dockerfile)
//	go run ./cmd/build-image -print-version                        # the version make uses
//
// The version is semver, derived from the commit unless -version gives one
// (see imagebuild.GitState.Version). The only timestamp in the result is
// SOURCE_DATE_EPOCH (Unix seconds; 0 when unset), so the same inputs give
// the same digests.
package main

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/deploy"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/deploy/imagebuild"
)

type binaryFlags map[string]string

func (b binaryFlags) String() string { return fmt.Sprint(map[string]string(b)) }

func (b binaryFlags) Set(v string) error {
	platform, path, ok := strings.Cut(v, "=")
	if !ok || path == "" {
		return fmt.Errorf("%q: want linux/ARCH=PATH", v)
	}

	arch, err := parsePlatform(platform)
	if err != nil {
		return err
	}

	b[arch] = path

	return nil
}

func parsePlatform(p string) (string, error) {
	osName, arch, ok := strings.Cut(strings.TrimSpace(p), "/")
	if !ok || osName != "linux" || arch == "" || strings.Contains(arch, "/") {
		return "", fmt.Errorf("platform %q: want linux/ARCH (Talos runs on linux/amd64 and linux/arm64)", p)
	}

	return arch, nil
}

type options struct {
	version      string // "" until derived from git
	revision     string // "" until read from git
	printVersion bool
	platforms    []string // arches
	binaries     binaryFlags
	pkg          string
	out          string
	archive      string
	rootfs       string
	push         string
	// signKey is a cosign or PKCS#8 PEM key file; signPassword decrypts a
	// cosign key ($COSIGN_PASSWORD, as cosign reads it).
	signKey      string
	signPassword string
	signatureOut string
	created      time.Time
}

func parseFlags(args []string, getenv func(string) string) (options, error) {
	fs := flag.NewFlagSet("build-image", flag.ContinueOnError)

	opts := options{binaries: binaryFlags{}, signPassword: getenv("COSIGN_PASSWORD")}

	var platforms, epoch string

	fs.StringVar(&opts.version, "version", "", "version stamped into manifest.yaml and main.version: vX.Y.Z[-PRERELEASE] (default: derived from the commit)")
	fs.StringVar(&opts.revision, "revision", "", "full hash of the commit built, for the revision annotation (default: HEAD of the git checkout)")
	fs.BoolVar(&opts.printVersion, "print-version", false, "print the version (given or derived) and exit")
	fs.StringVar(&platforms, "platforms", "linux/amd64,linux/arm64", "comma-separated platforms of the index")
	fs.Var(opts.binaries, "binary", "prebuilt daemon for a platform, linux/ARCH=PATH (repeatable); others are built with go build")
	fs.StringVar(&opts.pkg, "package", imagebuild.MainPackage, "main package built when no -binary is given")
	fs.StringVar(&opts.out, "out", "_out/image", "OCI image layout directory (replaced)")
	fs.StringVar(&opts.archive, "archive", "_out/image.tar", "tar archive of the layout; empty to skip")
	fs.StringVar(&opts.rootfs, "rootfs", "", "write only the unpacked extension tree of the single platform to this directory")
	fs.StringVar(&opts.push, "push", "", "push the index to this repository, tagged with the version (e.g. ghcr.io/org/image)")
	fs.StringVar(&opts.signKey, "sign-key", "", "sign the index with this ECDSA P-256 key: a cosign key (password in $COSIGN_PASSWORD) or a PKCS#8 PEM key")
	fs.StringVar(&opts.signatureOut, "signature-out", "_out/image-signature", "OCI layout of the cosign signature, written when signing (replaced)")
	fs.StringVar(&epoch, "source-date-epoch", getenv("SOURCE_DATE_EPOCH"), "timestamp of every file and of the image, Unix seconds (default $SOURCE_DATE_EPOCH, else 0)")

	if err := fs.Parse(args); err != nil {
		return opts, err
	}

	if fs.NArg() != 0 {
		return opts, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}

	if opts.version != "" {
		if err := imagebuild.CheckVersion(opts.version); err != nil {
			return opts, err
		}
	}

	for _, p := range strings.Split(platforms, ",") {
		arch, err := parsePlatform(p)
		if err != nil {
			return opts, err
		}

		opts.platforms = append(opts.platforms, arch)
	}

	for arch := range opts.binaries {
		if !contains(opts.platforms, arch) {
			return opts, fmt.Errorf("-binary for linux/%s, which is not in -platforms", arch)
		}
	}

	if opts.rootfs != "" && len(opts.platforms) != 1 {
		return opts, errors.New("-rootfs writes one platform's tree: give exactly one -platforms entry")
	}

	if opts.rootfs != "" && (opts.signKey != "" || opts.push != "") {
		return opts, errors.New("-rootfs writes a tree, not an image: nothing to sign or push")
	}

	secs := int64(0)

	if epoch != "" {
		var err error

		secs, err = strconv.ParseInt(epoch, 10, 64)
		if err != nil || secs < 0 {
			return opts, fmt.Errorf("SOURCE_DATE_EPOCH %q: want non-negative Unix seconds", epoch)
		}
	}

	opts.created = time.Unix(secs, 0).UTC()

	return opts, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}

	return false
}

func main() {
	opts, err := parseFlags(os.Args[1:], os.Getenv)
	if errors.Is(err, flag.ErrHelp) {
		return
	}

	if err != nil {
		fmt.Fprintln(os.Stderr, "build-image:", err)
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	opts, err = fromGit(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build-image:", err)
		os.Exit(2)
	}

	if opts.printVersion {
		fmt.Println(opts.version)

		return
	}

	if err := run(ctx, opts); err != nil {
		fmt.Fprintln(os.Stderr, "build-image:", err)
		os.Exit(1)
	}
}

// fromGit fills in what was not given by hand from the git checkout: the
// version and the revision (the commit). -print-version needs only the
// version, so that `make build VERSION=...` works outside git too.
func fromGit(ctx context.Context, opts options) (options, error) {
	if opts.version != "" && (opts.revision != "" || opts.printVersion) {
		return opts, nil
	}

	g, err := imagebuild.ReadGitState(ctx, "")
	if err != nil {
		return opts, fmt.Errorf("outside a git checkout, give -version and -revision: %w", err)
	}

	if opts.version == "" {
		if opts.version, err = g.Version(); err != nil {
			return opts, err
		}
	}

	if opts.revision == "" {
		opts.revision = g.Commit
	}

	return opts, nil
}

func run(ctx context.Context, opts options) error {
	in := imagebuild.Input{
		Manifest:    deploy.Manifest,
		ServiceSpec: deploy.ServiceSpec,
		Version:     opts.version,
		Revision:    opts.revision,
		Created:     opts.created,
	}

	// Refuse a bad key or push target before minutes of building.
	var key *ecdsa.PrivateKey

	if opts.signKey != "" {
		raw, err := os.ReadFile(opts.signKey)
		if err != nil {
			return fmt.Errorf("read signing key: %w", err)
		}

		if key, err = imagebuild.LoadSigningKey(raw, []byte(opts.signPassword)); err != nil {
			return fmt.Errorf("%s: %w", opts.signKey, err)
		}
	}

	var target name.Tag

	if opts.push != "" {
		var err error
		if target, err = pushTag(opts.push, opts.version); err != nil {
			return err
		}
	}

	tmp, err := os.MkdirTemp("", "build-image-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer os.RemoveAll(tmp) //nolint:errcheck // temp files

	for _, arch := range opts.platforms {
		path, ok := opts.binaries[arch]
		if !ok {
			path = filepath.Join(tmp, arch, imagebuild.BinaryName)

			build := imagebuild.GoBuild{Package: opts.pkg, Arch: arch, Version: opts.version, Output: path}
			if err := build.Run(ctx); err != nil {
				return err
			}
		}

		bin, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("read daemon binary for linux/%s: %w", arch, err)
		}

		fmt.Printf("linux/%s: binary %s (%d bytes)\n", arch, path, len(bin))

		in.Platforms = append(in.Platforms, imagebuild.Platform{Arch: arch, Binary: bin})
	}

	if opts.rootfs != "" {
		tree, err := imagebuild.NewTree(in, in.Platforms[0])
		if err != nil {
			return err
		}

		if err := tree.WriteDir(opts.rootfs, in.Created); err != nil {
			return err
		}

		fmt.Printf("extension tree written to %s\n", opts.rootfs)

		return nil
	}

	idx, err := imagebuild.Index(in)
	if err != nil {
		return err
	}

	digest, err := idx.Digest()
	if err != nil {
		return fmt.Errorf("index digest: %w", err)
	}

	if err := os.MkdirAll(filepath.Dir(opts.out), 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}

	if err := imagebuild.WriteLayout(opts.out, idx); err != nil {
		return err
	}

	fmt.Printf("OCI layout: %s\n", opts.out)

	if opts.archive != "" {
		if err := imagebuild.WriteArchive(opts.archive, opts.out, in.Created); err != nil {
			return err
		}

		fmt.Printf("archive: %s\n", opts.archive)
	}

	signed := "unsigned (no signing key given)"

	var sig v1.Image

	// A signature left from an earlier build would name another digest.
	if key == nil {
		if err := os.RemoveAll(opts.signatureOut); err != nil {
			return fmt.Errorf("remove the old signature: %w", err)
		}
	}

	if key != nil {
		repository, _ := name.NewRepository(imagebuild.DefaultRepository)
		if opts.push != "" {
			repository = target.Context()
		}

		if sig, err = imagebuild.SignatureImage(key, repository, digest); err != nil {
			return err
		}

		if err := imagebuild.VerifySignatureImage(key.Public(), sig, digest); err != nil {
			return fmt.Errorf("the signature just made does not verify: %w", err)
		}

		if err := imagebuild.WriteSignatureLayout(opts.signatureOut, sig, digest); err != nil {
			return err
		}

		signed = fmt.Sprintf("signed: cosign signature %s in %s", imagebuild.SignatureTag(digest), opts.signatureOut)
	}

	if opts.push != "" {
		pushed, err := imagebuild.Push(ctx, idx, target.String())
		if err != nil {
			return err
		}

		fmt.Printf("pushed: %s\n", pushed)

		if sig != nil {
			sigTag, err := imagebuild.PushSignature(ctx, sig, target.Context(), digest)
			if err != nil {
				return err
			}

			signed = "signed: cosign signature pushed to " + sigTag.String()
		}
	}

	return summary(in, idx, signed)
}

// pushTag is where -push sends the index: the repository, tagged with the
// version. A tag given with it must be the version, so that the image tag
// always agrees with the manifest and --version.
func pushTag(ref, version string) (name.Tag, error) {
	repo, err := name.NewRepository(ref)
	if err == nil {
		return repo.Tag(version), nil
	}

	tag, tagErr := name.NewTag(ref)
	if tagErr != nil {
		return name.Tag{}, fmt.Errorf("-push %q: want a repository such as ghcr.io/org/image: %w", ref, err)
	}

	if tag.TagStr() != version {
		return name.Tag{}, fmt.Errorf("-push %q: the tag %q is not the version %s; give the repository alone", ref, tag.TagStr(), version)
	}

	return tag, nil
}

// summary prints what was built: per platform the image digest, its size
// as pulled (manifest, config and compressed layers) and the number of
// packages in its SBOM; the index digest, version and revision; whether it
// is signed.
func summary(in imagebuild.Input, idx v1.ImageIndex, signed string) error {
	digest, err := idx.Digest()
	if err != nil {
		return fmt.Errorf("index digest: %w", err)
	}

	im, err := idx.IndexManifest()
	if err != nil {
		return fmt.Errorf("index manifest: %w", err)
	}

	packages := map[string]int{}

	for _, p := range in.Platforms {
		if packages[p.Arch], err = imagebuild.SBOMPackageCount(in, p); err != nil {
			return err
		}
	}

	fmt.Println("summary:")

	for _, desc := range im.Manifests {
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return fmt.Errorf("image %s: %w", desc.Digest, err)
		}

		size, err := imagebuild.PulledSize(img)
		if err != nil {
			return err
		}

		arch := desc.Platform.Architecture
		fmt.Printf("  linux/%s: image %s, %d bytes to pull, SBOM of %d packages\n", arch, desc.Digest, size, packages[arch])
	}

	fmt.Printf("  index: %s (version %s, revision %s)\n", digest, in.Version, in.Revision)
	fmt.Printf("  %s\n", signed)

	return nil
}
