package imagebuild

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// WriteLayout writes idx as an OCI image layout at dir, replacing whatever
// was there. index.json is the multi-platform index itself (its entries are
// the per-platform manifests with their platform), which is what the Talos
// imager's `ociPath` input reads; the index is also stored as a blob so that
// it can be addressed by digest.
func WriteLayout(dir string, idx v1.ImageIndex) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}

	p, err := layout.Write(dir, idx)
	if err != nil {
		return fmt.Errorf("write OCI layout %s: %w", dir, err)
	}

	if err := p.WriteIndex(idx); err != nil {
		return fmt.Errorf("write index blob to %s: %w", dir, err)
	}

	return nil
}

// WriteArchive packs the layout at dir into a tar file (an "oci-archive":
// `docker load` >= 25, `podman load`, `skopeo copy oci-archive:`), with
// sorted entries, root ownership, fixed modes and every time set to mtime.
// The archive is written next to path and renamed into place.
func WriteArchive(path, dir string, mtime time.Time) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".image-*.tar")
	if err != nil {
		return fmt.Errorf("create archive: %w", err)
	}

	defer func() {
		if err != nil {
			tmp.Close()           //nolint:errcheck // already failing
			os.Remove(tmp.Name()) //nolint:errcheck // best effort cleanup
		}
	}()

	tw := tar.NewWriter(tmp)
	mtime = mtime.UTC().Truncate(time.Second)

	// WalkDir visits in lexical order, which fixes the entry order.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, walkErr error) error {
		if walkErr != nil {
			return walkErr
		}

		rel, relErr := filepath.Rel(dir, p)
		if relErr != nil {
			return relErr
		}

		if rel == "." {
			return nil
		}

		hdr := &tar.Header{Name: filepath.ToSlash(rel), ModTime: mtime, Format: tar.FormatPAX}

		switch {
		case d.IsDir():
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
		case d.Type().IsRegular():
			info, infoErr := d.Info()
			if infoErr != nil {
				return infoErr
			}

			hdr.Typeflag, hdr.Mode, hdr.Size = tar.TypeReg, 0o644, info.Size()
		default:
			return fmt.Errorf("unexpected file type in layout: %s", p)
		}

		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}

		if hdr.Typeflag != tar.TypeReg {
			return nil
		}

		f, openErr := os.Open(p)
		if openErr != nil {
			return openErr
		}

		_, copyErr := io.Copy(tw, f)

		return errors.Join(copyErr, f.Close())
	})
	if err != nil {
		return fmt.Errorf("archive %s: %w", dir, err)
	}

	if err = tw.Close(); err != nil {
		return fmt.Errorf("finish archive: %w", err)
	}

	if err = tmp.Close(); err != nil {
		return fmt.Errorf("close archive: %w", err)
	}

	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("chmod archive: %w", err)
	}

	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("move archive into place: %w", err)
	}

	return nil
}

// Push uploads the index and everything it references to ref (for example
// ghcr.io/org/kommodity-autobootstrap-extension:v1.0.0). Credentials come
// from the Docker config (~/.docker/config.json, credential helpers), as
// `docker login` or `crane auth login` leave them. It returns the pushed
// reference by digest.
func Push(ctx context.Context, idx v1.ImageIndex, ref string, opts ...remote.Option) (name.Digest, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return name.Digest{}, fmt.Errorf("push: parse reference %q: %w", ref, err)
	}

	digest, err := idx.Digest()
	if err != nil {
		return name.Digest{}, fmt.Errorf("push: index digest: %w", err)
	}

	if err := remote.WriteIndex(r, idx, pushOptions(ctx, opts)...); err != nil {
		return name.Digest{}, fmt.Errorf("push %s: %w", r, err)
	}

	return r.Context().Digest(digest.String()), nil
}

// pushOptions puts the context and the Docker config's credentials before
// the caller's options, which may override them.
func pushOptions(ctx context.Context, opts []remote.Option) []remote.Option {
	return append([]remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
	}, opts...)
}
