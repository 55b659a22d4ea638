package credentials

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	stdx509 "crypto/x509"
	"encoding/pem"

	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/constants"
)

// fixtureTime is when fixture secrets are "generated"; tests' fake clocks
// start here.
var fixtureTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// generated holds real configs made by machinery for one version contract.
type generated struct {
	contract     *config.VersionContract
	bundle       *secrets.Bundle
	controlPlane []byte
	init         []byte
	worker       []byte
	talosconfig  []byte
}

var (
	generatedMu    sync.Mutex
	generatedCache = map[string]*generated{}
)

// contractName is the cache key and subtest name for a contract.
func contractName(c *config.VersionContract) string {
	if c == nil {
		return "current"
	}

	return c.String()
}

// testedContracts: the oldest Talos the daemon supports, the last
// single-document one, a middle one and the current multi-document one.
var testedContracts = []*config.VersionContract{
	config.TalosVersion1_6,
	config.TalosVersion1_9,
	config.TalosVersion1_11,
	config.TalosVersionCurrent,
}

func generateConfigs(t *testing.T, contract *config.VersionContract, opts ...generate.Option) *generated {
	t.Helper()

	key := contractName(contract)

	cacheable := len(opts) == 0
	if cacheable {
		generatedMu.Lock()
		defer generatedMu.Unlock()

		if g, ok := generatedCache[key]; ok {
			return g
		}
	}

	bundle, err := secrets.NewBundle(secrets.NewFixedClock(fixtureTime), contract)
	if err != nil {
		t.Fatalf("secrets bundle for %s: %v", key, err)
	}

	opts = append([]generate.Option{generate.WithVersionContract(contract), generate.WithSecretsBundle(bundle)}, opts...)

	in, err := generate.NewInput("credentials-test", "https://198.18.0.10:6443", constants.DefaultKubernetesVersion, opts...)
	if err != nil {
		t.Fatalf("generate input for %s: %v", key, err)
	}

	g := &generated{contract: contract, bundle: bundle}

	for typ, dst := range map[machine.Type]*[]byte{
		machine.TypeControlPlane: &g.controlPlane,
		machine.TypeInit:         &g.init,
		machine.TypeWorker:       &g.worker,
	} {
		cfg, err := in.Config(typ)
		if err != nil {
			t.Fatalf("generate %s config for %s: %v", typ, key, err)
		}

		if *dst, err = cfg.Bytes(); err != nil {
			t.Fatalf("encode %s config for %s: %v", typ, key, err)
		}
	}

	tc, err := in.Talosconfig()
	if err != nil {
		t.Fatalf("generate talosconfig for %s: %v", key, err)
	}

	if g.talosconfig, err = tc.Bytes(); err != nil {
		t.Fatalf("encode talosconfig for %s: %v", key, err)
	}

	if cacheable {
		generatedCache[key] = g
	}

	return g
}

// patchConfig rewrites the v1alpha1 document of a generated config.
func patchConfig(t *testing.T, data []byte, patch func(*v1alpha1.Config)) []byte {
	t.Helper()

	cfg, err := configloader.NewFromBytes(data)
	if err != nil {
		t.Fatalf("parse fixture: %v", err)
	}

	patched, err := cfg.PatchV1Alpha1(func(c *v1alpha1.Config) error {
		patch(c)

		return nil
	})
	if err != nil {
		t.Fatalf("patch fixture: %v", err)
	}

	out, err := patched.EncodeBytes()
	if err != nil {
		t.Fatalf("encode patched fixture: %v", err)
	}

	return out
}

// documentCount counts YAML documents the way configloader splits them.
func documentCount(t *testing.T, data []byte) int {
	t.Helper()

	cfg, err := configloader.NewFromBytes(data)
	if err != nil {
		t.Fatalf("parse fixture: %v", err)
	}

	return len(cfg.Documents())
}

// ecdsaCA is a matching, valid, but non-Ed25519 CA.
func ecdsaCA(t *testing.T) *x509.PEMEncodedCertificateAndKey {
	t.Helper()

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tmpl := &stdx509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"talos"}},
		NotBefore:             fixtureTime.Add(-time.Hour),
		NotAfter:              fixtureTime.Add(24 * 365 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              stdx509.KeyUsageCertSign | stdx509.KeyUsageDigitalSignature,
	}

	der, err := stdx509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}

	keyDER, err := stdx509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}

	return &x509.PEMEncodedCertificateAndKey{
		Crt: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
}

// requireRoot skips a test that needs root (mounts, loop devices), except
// under CI=true where a skipped root test would hide a missing capability.
func requireRoot(t *testing.T, tools ...string) {
	t.Helper()

	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}

	if os.Geteuid() != 0 {
		fail("needs root for loop devices and mounts (running as uid %d)", os.Geteuid())
	}

	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			fail("needs %s (apt-get install xfsprogs util-linux): %v", tool, err)
		}
	}
}

// containsAny reports whether haystack contains any of the needles.
func containsAny(haystack []byte, needles ...[]byte) bool {
	for _, n := range needles {
		if len(n) > 0 && bytes.Contains(haystack, n) {
			return true
		}
	}

	return false
}

// withSideroLink is config data with a SideroLinkConfig document for api
// appended, as Omni's join config adds it.
func withSideroLink(data []byte, api string) []byte {
	return append(bytes.Clone(data), "\n---\napiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: "+api+"\n"...)
}
