package imagebuild_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/payload"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/deploy/imagebuild"
)

// throwawayKey is a cosign-format key pair (`cosign generate-key-pair`
// writes the same PEM type, encrypted with the password), made with the
// sigstore library.
func throwawayKey(t *testing.T, password string) (privPEM []byte, pub crypto.PublicKey) {
	t.Helper()

	privPEM, pubPEM, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.StaticPasswordFunc([]byte(password)))
	if err != nil {
		t.Fatal(err)
	}

	pub, err = cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		t.Fatal(err)
	}

	return privPEM, pub
}

func TestLoadSigningKey(t *testing.T) {
	cosignKey, _ := throwawayKey(t, "s3cret")
	if !bytes.Contains(cosignKey, []byte("ENCRYPTED SIGSTORE PRIVATE KEY")) {
		t.Fatalf("not a cosign key:\n%s", cosignKey)
	}

	if _, err := imagebuild.LoadSigningKey(cosignKey, []byte("s3cret")); err != nil {
		t.Errorf("cosign key: %v", err)
	}

	if _, err := imagebuild.LoadSigningKey(cosignKey, []byte("wrong")); err == nil {
		t.Error("cosign key opened with the wrong password")
	}

	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	pkcs8, err := cryptoutils.MarshalPrivateKeyToPEM(ec)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := imagebuild.LoadSigningKey(pkcs8, nil); err != nil {
		t.Errorf("PKCS#8 key: %v", err)
	}

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}

	for name, key := range map[string]crypto.PrivateKey{"P-384": p384, "RSA": rsaKey} {
		raw, err := cryptoutils.MarshalPrivateKeyToPEM(key)
		if err != nil {
			t.Fatal(err)
		}

		if _, err := imagebuild.LoadSigningKey(raw, nil); err == nil {
			t.Errorf("%s key accepted", name)
		}
	}

	if _, err := imagebuild.LoadSigningKey([]byte("not a key"), nil); err == nil {
		t.Error("garbage accepted")
	}
}

// signatureParts returns the payload and the signature of the one layer of
// a cosign signature image.
func signatureParts(t *testing.T, sig v1.Image) (body, raw []byte) {
	t.Helper()

	m, err := sig.Manifest()
	if err != nil {
		t.Fatal(err)
	}

	if len(m.Layers) != 1 || m.Layers[0].MediaType != imagebuild.SimpleSigningMediaType {
		t.Fatalf("signature layers %+v, want one simple-signing layer", m.Layers)
	}

	raw, err = base64.StdEncoding.DecodeString(m.Layers[0].Annotations[imagebuild.SignatureAnnotation])
	if err != nil {
		t.Fatal(err)
	}

	layer, err := sig.LayerByDigest(m.Layers[0].Digest)
	if err != nil {
		t.Fatal(err)
	}

	rc, err := layer.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close() //nolint:errcheck

	body, err = io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}

	return body, raw
}

func TestSignatureOfTheLayout(t *testing.T) {
	privPEM, pub := throwawayKey(t, "pw")

	key, err := imagebuild.LoadSigningKey(privPEM, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}

	idx, layoutDir, _ := writeImage(t, input(binaries(t), testVersion, epoch))

	digest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}

	repo, err := name.NewRepository(imagebuild.DefaultRepository)
	if err != nil {
		t.Fatal(err)
	}

	sig, err := imagebuild.SignatureImage(key, repo, digest)
	if err != nil {
		t.Fatal(err)
	}

	sigDir := filepath.Join(t.TempDir(), "image-signature")
	if err := imagebuild.WriteSignatureLayout(sigDir, sig, digest); err != nil {
		t.Fatal(err)
	}

	// Read the signature back from its layout, by the tag cosign uses.
	p, err := layout.FromPath(sigDir)
	if err != nil {
		t.Fatal(err)
	}

	sigIdx, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}

	im, err := sigIdx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}

	if len(im.Manifests) != 1 || im.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "sha256-"+digest.Hex+".sig" {
		t.Fatalf("signature layout index %+v", im.Manifests)
	}

	stored, err := p.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}

	// The sigstore library's verifier, on its own: the signature is ECDSA
	// over the payload, and the payload names the index digest.
	body, raw := signatureParts(t, stored)

	verifier, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}

	if err := verifier.VerifySignature(bytes.NewReader(raw), bytes.NewReader(body)); err != nil {
		t.Fatalf("sigstore verifier: %v", err)
	}

	var claim payload.Cosign
	if err := json.Unmarshal(body, &claim); err != nil {
		t.Fatal(err)
	}

	if claim.Image.DigestStr() != digest.String() || claim.Image.Context().Name() != imagebuild.DefaultRepository {
		t.Errorf("payload names %s, signed %s", claim.Image, digest)
	}

	if err := imagebuild.VerifySignatureImage(pub, stored, digest); err != nil {
		t.Errorf("VerifySignatureImage: %v", err)
	}

	// The layout of the image itself is the unsigned one, to the byte.
	if got, _ := readBack(t, layoutDir); got != digest {
		t.Errorf("layout index %s, built %s", got, digest)
	}

	// Tampering.
	other := digest
	other.Hex = strings.Repeat("0", 64)

	if err := imagebuild.VerifySignatureImage(pub, stored, other); err == nil {
		t.Error("the signature verifies for another digest")
	}

	forged, err := imagebuild.SignatureImage(key, repo, other)
	if err != nil {
		t.Fatal(err)
	}

	forgedBody, _ := signatureParts(t, forged)

	swapped, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:       static.NewLayer(forgedBody, imagebuild.SimpleSigningMediaType),
		MediaType:   imagebuild.SimpleSigningMediaType,
		Annotations: map[string]string{imagebuild.SignatureAnnotation: base64.StdEncoding.EncodeToString(raw)},
	})
	if err != nil {
		t.Fatal(err)
	}

	if err := verifier.VerifySignature(bytes.NewReader(raw), bytes.NewReader(forgedBody)); err == nil {
		t.Error("sigstore verifier accepts the signature over a payload naming another digest")
	}

	if err := imagebuild.VerifySignatureImage(pub, swapped, other); err == nil {
		t.Error("a payload swapped under the signature verifies")
	}

	_, otherPub := throwawayKey(t, "pw")
	if err := imagebuild.VerifySignatureImage(otherPub, stored, digest); err == nil {
		t.Error("the signature verifies with another key")
	}

	// Signing again: the image is the same, only the signature differs.
	again, err := imagebuild.SignatureImage(key, repo, digest)
	if err != nil {
		t.Fatal(err)
	}

	d1, _ := stored.Digest()
	d2, _ := again.Digest()

	if d1 == d2 {
		t.Error("two ECDSA signatures are byte-identical")
	}
}

// pushSignedIndex builds the index, signs it with the cosign key privPEM
// (password "pw") and pushes both to a registry on loopback, which lives
// as long as the test.
func pushSignedIndex(ctx context.Context, t *testing.T, privPEM []byte) (name.Repository, v1.Hash, name.Tag) {
	t.Helper()

	key, err := imagebuild.LoadSigningKey(privPEM, []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}

	idx, err := imagebuild.Index(input(binaries(t), testVersion, epoch))
	if err != nil {
		t.Fatal(err)
	}

	digest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)

	repo, err := name.NewRepository(strings.TrimPrefix(srv.URL, "http://") + "/kommodity-io/kommodity-autobootstrap-extension")
	if err != nil {
		t.Fatal(err)
	}

	if _, err := imagebuild.Push(ctx, idx, repo.Tag(testVersion).String()); err != nil {
		t.Fatal(err)
	}

	sig, err := imagebuild.SignatureImage(key, repo, digest)
	if err != nil {
		t.Fatal(err)
	}

	tag, err := imagebuild.PushSignature(ctx, sig, repo, digest)
	if err != nil {
		t.Fatal(err)
	}

	return repo, digest, tag
}

// TestSignaturePushedBesideTheImage pushes a signed index to a registry on
// loopback and finds the signature where cosign and Image Factory look:
// <repository>:sha256-<index digest>.sig.
func TestSignaturePushedBesideTheImage(t *testing.T) {
	privPEM, pub := throwawayKey(t, "pw")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	repo, digest, tag := pushSignedIndex(ctx, t, privPEM)

	if want := repo.Tag("sha256-" + digest.Hex + ".sig"); tag != want {
		t.Errorf("signature tag %s, want %s", tag, want)
	}

	// As a verifier does: resolve the tag, then fetch the signature by the
	// digest it resolved to.
	desc, err := remote.Head(repo.Tag(testVersion), remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}

	if desc.Digest != digest {
		t.Errorf("the tag resolves to %s, signed %s", desc.Digest, digest)
	}

	fetched, err := remote.Image(repo.Tag(imagebuild.SignatureTag(desc.Digest)), remote.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}

	if err := imagebuild.VerifySignatureImage(pub, fetched, desc.Digest); err != nil {
		t.Errorf("pushed signature: %v", err)
	}

	claim, _ := signatureParts(t, fetched)
	if !bytes.Contains(claim, []byte(`"docker-reference":"`+repo.Name()+`"`)) {
		t.Errorf("payload %s does not name the repository %s", claim, repo.Name())
	}
}

// TestCosignVerifies runs cosign itself, where it is installed, against a
// signed index pushed to a registry on loopback: `cosign verify --key
// --insecure-ignore-tlog=true` accepts it, and refuses another key.
func TestCosignVerifies(t *testing.T) {
	cosign, err := exec.LookPath("cosign")
	if err != nil {
		t.Skip("cosign is not installed")
	}

	privPEM, pubPEM, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.StaticPasswordFunc([]byte("pw")))
	if err != nil {
		t.Fatal(err)
	}

	_, otherPubPEM, err := cryptoutils.GeneratePEMEncodedECDSAKeyPair(elliptic.P256(), cryptoutils.SkipPassword)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	for file, content := range map[string][]byte{"cosign.pub": pubPEM, "other.pub": otherPubPEM} {
		if err := os.WriteFile(filepath.Join(dir, file), content, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	repo, _, _ := pushSignedIndex(ctx, t, privPEM)

	verify := func(pub string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, cosign, "verify", "--key", filepath.Join(dir, pub),
			"--insecure-ignore-tlog=true", "--allow-insecure-registry", repo.Tag(testVersion).String())
		cmd.Env = append(os.Environ(), "HOME="+dir) // cosign's caches stay in the test's directory

		return cmd.CombinedOutput()
	}

	if out, err := verify("cosign.pub"); err != nil {
		t.Errorf("cosign verify: %v\n%s", err, out)
	}

	if out, err := verify("other.pub"); err == nil {
		t.Errorf("cosign verify accepted another key:\n%s", out)
	}
}
