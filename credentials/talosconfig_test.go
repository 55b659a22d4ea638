package credentials

import (
	"bytes"
	"context"
	stdx509 "crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"github.com/siderolabs/talos/pkg/machinery/role"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// The method sets the daemon's state handlers consume
// (states.CredentialSource and states.ControlPlaneMarker), spelled out here
// so that this package's tests do not build the states package.
type (
	credentialSource interface {
		Describe() string
		Load(ctx context.Context) (transport.MachineType, transport.Identity, error)
	}
	controlPlaneMarker interface {
		Present() (bool, error)
		Wait(ctx context.Context) (bool, error)
	}
)

var (
	_ credentialSource   = StateSource{}
	_ credentialSource   = TalosconfigSource{}
	_ controlPlaneMarker = ControlPlaneDetector{}
)

func writeTalosconfig(t *testing.T, data []byte) string {
	t.Helper()

	path := filepath.Join(t.TempDir(), "talosconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	return path
}

// editTalosconfig changes the current context of a generated talosconfig.
func editTalosconfig(t *testing.T, data []byte, edit func(cfg *clientconfig.Config, ctx *clientconfig.Context)) []byte {
	t.Helper()

	cfg, err := clientconfig.FromBytes(data)
	if err != nil {
		t.Fatal(err)
	}

	edit(cfg, cfg.Contexts[cfg.Context])

	out, err := cfg.Bytes()
	if err != nil {
		t.Fatal(err)
	}

	return out
}

func TestTalosconfigSource(t *testing.T) {
	for _, contract := range []*config.VersionContract{config.TalosVersion1_6, config.TalosVersionCurrent} {
		t.Run(contractName(contract), func(t *testing.T) {
			g := generateConfigs(t, contract)
			path := writeTalosconfig(t, g.talosconfig)

			var logged bytes.Buffer

			src := TalosconfigSource{Path: path, Clock: clockwork.NewFakeClockAt(fixtureTime.Add(time.Hour)), Log: zerolog.New(&logged)}

			if got := src.Describe(); !strings.Contains(got, path) {
				t.Errorf("Describe() = %q, want the path", got)
			}

			mt, id, err := src.Load(context.Background())
			if err != nil {
				t.Fatal(err)
			}

			if mt != transport.MachineTypeUnknown {
				t.Errorf("machine type %q, want unknown", mt)
			}

			if logged.Len() != 0 {
				t.Errorf("fresh talosconfig logged warnings: %s", logged.String())
			}

			cert, err := id.ClientCertificate()
			if err != nil {
				t.Fatal(err)
			}

			tc, _ := clientconfig.FromBytes(g.talosconfig)
			wantCrt, _ := base64.StdEncoding.DecodeString(tc.Contexts[tc.Context].Crt)

			leaf, _ := stdx509.ParseCertificate(cert.Certificate[0])
			if block, _ := pem.Decode(wantCrt); block == nil || !bytes.Equal(block.Bytes, leaf.Raw) {
				t.Error("client certificate is not the talosconfig's")
			}

			// Peers are verified against the talosconfig's CA: the cluster CA.
			if _, err := leaf.Verify(stdx509.VerifyOptions{
				Roots: id.ClusterCA(), CurrentTime: leaf.NotBefore.Add(time.Minute),
				KeyUsages: []stdx509.ExtKeyUsage{stdx509.ExtKeyUsageClientAuth},
			}); err != nil {
				t.Errorf("ClusterCA does not hold the talosconfig's CA: %v", err)
			}
		})
	}
}

func TestTalosconfigExpiry(t *testing.T) {
	g := generateConfigs(t, config.TalosVersionCurrent)
	path := writeTalosconfig(t, g.talosconfig)
	expires := fixtureTime.Add(constants.TalosAPIDefaultCertificateValidityDuration)

	t.Run("expiring soon is a warning", func(t *testing.T) {
		var logged bytes.Buffer

		clock := clockwork.NewFakeClockAt(expires.Add(-3 * 24 * time.Hour))

		_, id, err := TalosconfigSource{Path: path, Clock: clock, Log: zerolog.New(&logged)}.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}

		if !strings.Contains(logged.String(), "expires in") {
			t.Errorf("no expiry warning logged: %q", logged.String())
		}

		// Once expired, the identity refuses to hand out the certificate.
		clock.Advance(4 * 24 * time.Hour)

		if _, err := id.ClientCertificate(); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Errorf("expired certificate handed out: err = %v", err)
		}
	})

	t.Run("expired is refused", func(t *testing.T) {
		_, _, err := TalosconfigSource{Path: path, Clock: clockwork.NewFakeClockAt(expires.Add(time.Hour))}.Load(context.Background())
		if err == nil || !strings.Contains(err.Error(), "expired") || !isPermanent(err) {
			t.Errorf("err = %v, want a permanent expiry error", err)
		}
	})
}

func TestTalosconfigRejects(t *testing.T) {
	g := generateConfigs(t, config.TalosVersionCurrent)
	reader := generateConfigs(t, config.TalosVersionCurrent, generate.WithRoles(role.MakeSet(role.Reader)))
	other := generateConfigs(t, config.TalosVersion1_9)

	cases := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"not yaml", []byte("context: [\n"), "parse"},
		{"no current context", editTalosconfig(t, g.talosconfig, func(c *clientconfig.Config, _ *clientconfig.Context) { c.Context = "" }), "no current context"},
		{"undefined context", editTalosconfig(t, g.talosconfig, func(c *clientconfig.Config, _ *clientconfig.Context) { c.Context = "elsewhere" }), `"elsewhere" is not defined`},
		{"no ca", editTalosconfig(t, g.talosconfig, func(_ *clientconfig.Config, c *clientconfig.Context) { c.CA = "" }), "has no ca"},
		{"no crt", editTalosconfig(t, g.talosconfig, func(_ *clientconfig.Config, c *clientconfig.Context) { c.Crt = "" }), "has no crt"},
		{"no key", editTalosconfig(t, g.talosconfig, func(_ *clientconfig.Config, c *clientconfig.Context) { c.Key = "" }), "has no key"},
		{"key not base64", editTalosconfig(t, g.talosconfig, func(_ *clientconfig.Config, c *clientconfig.Context) { c.Key = "%%%" }), "key is not base64"},
		{"key of another cluster", editTalosconfig(t, g.talosconfig, func(_ *clientconfig.Config, c *clientconfig.Context) {
			oc, _ := clientconfig.FromBytes(other.talosconfig)
			c.Key = oc.Contexts[oc.Context].Key
		}), "client certificate and key"},
		{"reader role", reader.talosconfig, "lack os:admin"},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeTalosconfig(t, tc.data)

			_, id, err := TalosconfigSource{Path: path, Clock: clockwork.NewFakeClockAt(fixtureTime.Add(time.Hour))}.Load(context.Background())
			if err == nil {
				t.Fatalf("accepted (%v), want error containing %q", id, tc.wantErr)
			}

			if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q, want it to name %s and contain %q", err, path, tc.wantErr)
			}

			if !isPermanent(err) {
				t.Errorf("error %q is not permanent", err)
			}
		})
	}
}

func TestTalosconfigMissingFileIsNotCreated(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent", "talosconfig")

	_, _, err := TalosconfigSource{Path: path}.Load(context.Background())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want not-exist", err)
	}

	if _, statErr := os.Stat(filepath.Dir(path)); !errors.Is(statErr, fs.ErrNotExist) {
		t.Errorf("Load created %s (clientconfig.Open would): %v", filepath.Dir(path), statErr)
	}
}
