package imagebuild

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"
)

// cosign's legacy signature layout: an image tagged sha256-<digest>.sig in
// the signed image's repository, one layer per signature holding the
// simple-signing payload, the signature in a layer annotation. This is what
// `cosign verify --key` and Image Factory's public-key check (cosign's
// VerifyImageSignatures, offline, no transparency log) look up.
const (
	SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json"
	SignatureAnnotation    = "dev.cosignproject.cosign/signature"
)

// DefaultRepository is the repository named in the signature's payload when
// the image is not pushed (make image): cosign and Image Factory check the
// signed digest, not this name.
const DefaultRepository = "ghcr.io/kommodity-io/kommodity-autobootstrap-extension"

// LoadSigningKey reads an ECDSA P-256 private key: a cosign key (`cosign
// generate-key-pair`, encrypted with password) or an unencrypted PKCS#8 PEM
// key (password ignored).
func LoadSigningKey(pemBytes, password []byte) (*ecdsa.PrivateKey, error) {
	key, err := cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return nil, fmt.Errorf("load signing key (cosign key with COSIGN_PASSWORD, or PKCS#8 PEM): %w", err)
	}

	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, fmt.Errorf("load signing key: a %T, want ECDSA P-256 (cosign's default)", key)
	}

	return ec, nil
}

// SignatureTag is the tag cosign looks up for the signature of digest.
func SignatureTag(digest v1.Hash) string {
	return digest.Algorithm + "-" + digest.Hex + ".sig"
}

// SignatureImage signs the image (index) digest in repository with key:
// the simple-signing payload, ECDSA P-256 over its SHA-256, laid out as
// cosign does. ECDSA signatures are randomised, so every call differs; the
// signed image does not change.
func SignatureImage(key *ecdsa.PrivateKey, repository name.Repository, digest v1.Hash) (v1.Image, error) {
	body, err := payload.Cosign{Image: repository.Digest(digest.String())}.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("sign: payload: %w", err)
	}

	signer, err := signature.LoadECDSASigner(key, crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}

	sig, err := signer.SignMessage(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", digest, err)
	}

	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)

	img, err := mutate.Append(base, mutate.Addendum{
		Layer:       static.NewLayer(body, SimpleSigningMediaType),
		MediaType:   SimpleSigningMediaType,
		Annotations: map[string]string{SignatureAnnotation: base64.StdEncoding.EncodeToString(sig)},
	})
	if err != nil {
		return nil, fmt.Errorf("sign: signature image: %w", err)
	}

	return img, nil
}

// VerifySignatureImage checks, as cosign's public-key verification does,
// that some layer of sigImg is a signature by pub over a simple-signing
// payload whose digest is digest.
func VerifySignatureImage(pub crypto.PublicKey, sigImg v1.Image, digest v1.Hash) error {
	verifier, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}

	m, err := sigImg.Manifest()
	if err != nil {
		return fmt.Errorf("verify: signature manifest: %w", err)
	}

	var errs []error

	for _, desc := range m.Layers {
		if desc.MediaType != SimpleSigningMediaType {
			continue
		}

		if err := verifyLayer(verifier, sigImg, desc, digest); err != nil {
			errs = append(errs, fmt.Errorf("layer %s: %w", desc.Digest, err))

			continue
		}

		return nil
	}

	return fmt.Errorf("verify %s: no valid signature: %w", digest, errors.Join(errs...))
}

func verifyLayer(verifier signature.Verifier, sigImg v1.Image, desc v1.Descriptor, digest v1.Hash) error {
	sig, err := base64.StdEncoding.DecodeString(desc.Annotations[SignatureAnnotation])
	if err != nil || len(sig) == 0 {
		return fmt.Errorf("no base64 signature in %s", SignatureAnnotation)
	}

	layer, err := sigImg.LayerByDigest(desc.Digest)
	if err != nil {
		return err
	}

	rc, err := layer.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close() //nolint:errcheck // read-only

	body, err := io.ReadAll(rc)
	if err != nil {
		return err
	}

	if err := verifier.VerifySignature(bytes.NewReader(sig), bytes.NewReader(body)); err != nil {
		return err
	}

	var claim payload.SimpleContainerImage
	if err := json.Unmarshal(body, &claim); err != nil {
		return fmt.Errorf("payload: %w", err)
	}

	if claim.Critical.Type != payload.CosignSignatureType || claim.Critical.Image.DockerManifestDigest != digest.String() {
		return fmt.Errorf("payload signs %q (%s), not %s", claim.Critical.Image.DockerManifestDigest, claim.Critical.Type, digest)
	}

	return nil
}

// WriteSignatureLayout writes the signature as an OCI image layout at dir
// (replaced), its one manifest named with SignatureTag(digest), so that
// `crane push DIR REPO:sha256-<hex>.sig` or `skopeo copy oci:DIR:<tag>`
// publishes it beside the image.
func WriteSignatureLayout(dir string, sigImg v1.Image, digest v1.Hash) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear %s: %w", dir, err)
	}

	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write signature layout %s: %w", dir, err)
	}

	if err := p.AppendImage(sigImg, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": SignatureTag(digest),
	})); err != nil {
		return fmt.Errorf("write signature to %s: %w", dir, err)
	}

	return nil
}

// PushSignature uploads the signature of digest beside it in repository,
// under SignatureTag(digest), where cosign looks it up.
func PushSignature(ctx context.Context, sigImg v1.Image, repository name.Repository, digest v1.Hash, opts ...remote.Option) (name.Tag, error) {
	tag := repository.Tag(SignatureTag(digest))

	if err := remote.Write(tag, sigImg, pushOptions(ctx, opts)...); err != nil {
		return name.Tag{}, fmt.Errorf("push signature %s: %w", tag, err)
	}

	return tag, nil
}
