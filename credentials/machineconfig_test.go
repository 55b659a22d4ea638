package credentials

import (
	"bytes"
	"strings"
	"testing"

	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/types/v1alpha1"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

func TestGeneratedConfigsAreSingleAndMultiDocument(t *testing.T) {
	// The point of testing several contracts: old Talos writes one v1alpha1
	// document, current Talos several. Make sure the fixtures really differ.
	if n := documentCount(t, generateConfigs(t, config.TalosVersion1_9).controlPlane); n != 1 {
		t.Errorf("v1.9 control-plane config has %d documents, want 1", n)
	}

	if n := documentCount(t, generateConfigs(t, config.TalosVersionCurrent).controlPlane); n < 2 {
		t.Errorf("current control-plane config has %d documents, want several", n)
	}
}

func TestParseMachineConfigControlPlane(t *testing.T) {
	for _, contract := range testedContracts {
		g := generateConfigs(t, contract)

		for name, tc := range map[string]struct {
			data []byte
			want transport.MachineType
		}{
			"controlplane": {g.controlPlane, transport.MachineTypeControlPlane},
			"init":         {g.init, transport.MachineTypeInit},
		} {
			t.Run(contractName(contract)+"/"+name, func(t *testing.T) {
				cfg, err := parseMachineConfig(tc.data)
				if err != nil {
					t.Fatalf("parse: %v", err)
				}

				if cfg.machineType != tc.want {
					t.Errorf("machine type %q, want %q", cfg.machineType, tc.want)
				}

				if !bytes.Equal(cfg.issuingCA.Crt, g.bundle.Certs.OS.Crt) || !bytes.Equal(cfg.issuingCA.Key, g.bundle.Certs.OS.Key) {
					t.Error("CA differs from the secrets bundle's OS CA")
				}

				if _, err := NewIssuer(cfg.issuingCA, nil, 0); err != nil {
					t.Errorf("CA from a generated config refused: %v", err)
				}
			})
		}
	}
}

func TestParseMachineConfigWorker(t *testing.T) {
	for _, contract := range testedContracts {
		t.Run(contractName(contract), func(t *testing.T) {
			g := generateConfigs(t, contract)

			cfg, err := parseMachineConfig(g.worker)
			if err != nil {
				t.Fatalf("worker config: %v, want a clean worker result", err)
			}

			if cfg.machineType != transport.MachineTypeWorker {
				t.Errorf("machine type %q, want worker", cfg.machineType)
			}

			// The premise of ErrWorker: generated worker configs carry the CA
			// certificate but no key.
			parsed, perr := parseConfigForTest(g.worker)
			if perr != nil || parsed == nil || len(parsed.Crt) == 0 || len(parsed.Key) != 0 {
				t.Errorf("worker config CA: crt %d bytes, key %d bytes, err %v; want crt only", len(parsed.Crt), len(parsed.Key), perr)
			}
		})
	}
}

func TestParseMachineConfigRejects(t *testing.T) {
	g := generateConfigs(t, config.TalosVersionCurrent)
	other := generateConfigs(t, config.TalosVersion1_9)
	ecdsa := ecdsaCA(t)

	cases := []struct {
		name    string
		data    []byte
		wantErr string
		// issuer: the config parses; NewIssuer must refuse the CA.
		issuer bool
	}{
		{name: "empty", data: nil, wantErr: "parse machine config"},
		{name: "corrupt yaml", data: []byte("version: v1alpha1\nmachine: [\n  type: controlplane\n"), wantErr: "parse machine config"},
		{name: "not yaml", data: []byte("\x00\x01\x02 binary junk"), wantErr: "parse machine config"},
		{name: "unknown kind", data: []byte("apiVersion: v1alpha1\nkind: NoSuchDocument\nname: x\n"), wantErr: "parse machine config"},
		{name: "no v1alpha1 document", data: []byte("apiVersion: v1alpha1\nkind: SideroLinkConfig\napiUrl: https://198.18.0.1:8099\n"), wantErr: "no v1alpha1 document"},
		{name: "unknown machine type", data: patchConfig(t, g.controlPlane, func(c *v1alpha1.Config) { c.MachineConfig.MachineType = "leader" }), wantErr: "unknown machine type"},
		{name: "no CA", data: patchConfig(t, g.controlPlane, func(c *v1alpha1.Config) { c.MachineConfig.MachineCA = nil }), wantErr: "no machine CA certificate"},
		{name: "CA without key", data: patchConfig(t, g.controlPlane, func(c *v1alpha1.Config) { c.MachineConfig.MachineCA.Key = nil }), wantErr: "no machine CA key"},
		{
			name: "key of another cluster",
			data: patchConfig(t, g.controlPlane, func(c *v1alpha1.Config) {
				c.MachineConfig.MachineCA.Key = other.bundle.Certs.OS.Key
			}),
			wantErr: "key does not match the certificate", issuer: true,
		},
		{
			name: "ECDSA CA",
			data: patchConfig(t, g.controlPlane, func(c *v1alpha1.Config) {
				c.MachineConfig.MachineCA = ecdsa
			}),
			wantErr: "want an Ed25519 key", issuer: true,
		},
		{
			name: "Ed25519 cert with ECDSA key",
			data: patchConfig(t, g.controlPlane, func(c *v1alpha1.Config) {
				c.MachineConfig.MachineCA.Key = ecdsa.Key
			}),
			wantErr: "want an Ed25519 key", issuer: true,
		},
		{
			name: "key is not a private key",
			data: patchConfig(t, g.controlPlane, func(c *v1alpha1.Config) {
				c.MachineConfig.MachineCA.Key = []byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
			}),
			wantErr: "parse key", issuer: true,
		},
		{
			name: "certificate is garbage",
			data: patchConfig(t, g.controlPlane, func(c *v1alpha1.Config) {
				c.MachineConfig.MachineCA.Crt = []byte("not a certificate")
			}),
			wantErr: "parse certificate", issuer: true,
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseMachineConfig(tc.data)
			if tc.issuer {
				if err != nil {
					t.Fatalf("parse: %v (the config itself is well formed)", err)
				}

				_, err = NewIssuer(cfg.issuingCA, nil, 0)
			}

			if err == nil {
				t.Fatalf("accepted, want error containing %q", tc.wantErr)
			}

			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %q, want it to contain %q", err, tc.wantErr)
			}

			if !isPermanent(err) {
				t.Errorf("error %q is not permanent", err)
			}

			if !tc.issuer && cfg.machineType == transport.MachineTypeWorker {
				t.Errorf("refused config reported as a worker")
			}
		})
	}
}

// A config cut short anywhere (a torn write, a short read) must either be
// refused or, when the cut falls after everything needed, give exactly the
// CA of the whole config: never a different CA, never a panic.
func TestParseMachineConfigTruncated(t *testing.T) {
	for _, contract := range []*config.VersionContract{config.TalosVersion1_9, config.TalosVersionCurrent} {
		t.Run(contractName(contract), func(t *testing.T) {
			full := generateConfigs(t, contract).controlPlane

			step := max(len(full)/200, 1)
			accepted, refused := 0, 0

			for cut := 0; cut < len(full); cut += step {
				cfg, err := parseMachineConfig(full[:cut])
				if err != nil {
					refused++

					continue
				}

				if _, ierr := NewIssuer(cfg.issuingCA, nil, 0); ierr != nil {
					refused++

					continue
				}

				accepted++

				if !bytes.Equal(cfg.issuingCA.Key, generateConfigs(t, contract).bundle.Certs.OS.Key) {
					t.Fatalf("config cut at %d of %d bytes gave a different CA key", cut, len(full))
				}
			}

			if refused == 0 {
				t.Error("no truncation was refused")
			}

			t.Logf("%d cuts refused, %d accepted with the right CA", refused, accepted)
		})
	}
}

// parseConfigForTest returns the raw machine.ca of any config, worker or not.
func parseConfigForTest(data []byte) (*x509.PEMEncodedCertificateAndKey, error) {
	cfg, err := configloader.NewFromBytes(data)
	if err != nil {
		return nil, err
	}

	return cfg.Machine().Security().IssuingCA(), nil
}

func TestParseMachineConfigSideroLink(t *testing.T) {
	const api = "https://omni.example.com?jointoken=secret"

	for _, contract := range testedContracts {
		g := generateConfigs(t, contract)

		for name, tc := range map[string]struct {
			data []byte
			want string
		}{
			"without": {g.controlPlane, ""},
			"with":    {withSideroLink(g.controlPlane, api), api},
		} {
			t.Run(contractName(contract)+"/"+name, func(t *testing.T) {
				cfg, err := parseMachineConfig(tc.data)
				if err != nil {
					t.Fatalf("parse: %v", err)
				}

				if cfg.sideroLinkAPI != tc.want {
					t.Errorf("SideroLink API %q, want %q", cfg.sideroLinkAPI, tc.want)
				}
			})
		}
	}
}
