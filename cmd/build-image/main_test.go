package main

import (
	"context"
	"io/fs"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/container"
	"go.yaml.in/yaml/v4"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/config"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/deploy"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/deploy/imagebuild"
)

func TestParseFlags(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "SOURCE_DATE_EPOCH" {
				return v
			}

			return ""
		}
	}

	opts, err := parseFlags([]string{"-version", "v1.0.0", "-binary", "linux/arm64=/tmp/x"}, env("1700000000"))
	if err != nil {
		t.Fatal(err)
	}

	if !slices.Equal(opts.platforms, []string{"amd64", "arm64"}) || opts.binaries["arm64"] != "/tmp/x" {
		t.Errorf("platforms %v binaries %v", opts.platforms, opts.binaries)
	}

	if !opts.created.Equal(time.Unix(1_700_000_000, 0)) || opts.out != "_out/image" || opts.archive != "_out/image.tar" {
		t.Errorf("defaults: %+v", opts)
	}

	opts, err = parseFlags([]string{"-version", "v1.0.0"}, env(""))
	if err != nil || !opts.created.Equal(time.Unix(0, 0)) {
		t.Errorf("unset SOURCE_DATE_EPOCH: %v %v", opts.created, err)
	}

	opts, err = parseFlags(nil, env(""))
	if err != nil || opts.version != "" {
		t.Errorf("no version: %q %v (derived later, from git)", opts.version, err)
	}

	for name, args := range map[string][]string{
		"version not semver":      {"-version", "1.0"},
		"version with build":      {"-version", "v1.0.0+abc"},
		"windows":                 {"-version", "v1.0.0", "-platforms", "windows/amd64"},
		"no arch":                 {"-version", "v1.0.0", "-platforms", "linux"},
		"binary for other arch":   {"-version", "v1.0.0", "-platforms", "linux/amd64", "-binary", "linux/arm64=/x"},
		"binary without path":     {"-version", "v1.0.0", "-binary", "linux/arm64="},
		"rootfs for two arches":   {"-version", "v1.0.0", "-rootfs", "/tmp/t"},
		"rootfs signed":           {"-version", "v1.0.0", "-platforms", "linux/amd64", "-rootfs", "/tmp/t", "-sign-key", "k"},
		"negative epoch":          {"-version", "v1.0.0", "-source-date-epoch", "-5"},
		"epoch not a number":      {"-version", "v1.0.0", "-source-date-epoch", "yesterday"},
		"stray argument":          {"-version", "v1.0.0", "extra"},
		"variant in the platform": {"-version", "v1.0.0", "-platforms", "linux/arm/v7"},
	} {
		if _, err := parseFlags(args, env("")); err == nil {
			t.Errorf("%s: accepted %v", name, args)
		}
	}
}

func TestFromGit(t *testing.T) {
	ctx := context.Background()

	// -print-version with a given version needs no git (make build outside a checkout).
	got, err := fromGit(ctx, options{version: "v1.0.0", printVersion: true})
	if err != nil || got.version != "v1.0.0" || got.revision != "" {
		t.Errorf("given version: %+v %v", got, err)
	}

	// This test runs inside the project's checkout.
	got, err = fromGit(ctx, options{})
	if err != nil {
		t.Fatal(err)
	}

	if imagebuild.CheckVersion(got.version) != nil || len(got.revision) != 40 {
		t.Errorf("derived: version %q revision %q", got.version, got.revision)
	}

	given, err := fromGit(ctx, options{version: "v2.0.0", revision: strings.Repeat("a", 40)})
	if err != nil || given.version != "v2.0.0" || given.revision != strings.Repeat("a", 40) {
		t.Errorf("given version and revision were replaced: %+v %v", given, err)
	}
}

func TestPushTag(t *testing.T) {
	for ref, want := range map[string]string{
		"ghcr.io/org/x":                                   "ghcr.io/org/x:v1.2.3",
		"127.0.0.1:5000/org/x":                            "127.0.0.1:5000/org/x:v1.2.3",
		"ghcr.io/org/x:v1.2.3":                            "ghcr.io/org/x:v1.2.3",
		"127.0.0.1:5000/org/x:v1.2.3":                     "127.0.0.1:5000/org/x:v1.2.3",
		"ghcr.io/org/x:latest":                            "",
		"127.0.0.1:5000/org/x:v9.9.9":                     "",
		"not a reference":                                 "",
		"ghcr.io/org/x@sha256:" + strings.Repeat("0", 64): "",
	} {
		got, err := pushTag(ref, "v1.2.3")
		if want == "" {
			if err == nil {
				t.Errorf("%s: accepted as %s", ref, got)
			}

			continue
		}

		if err != nil || got.String() != want {
			t.Errorf("%s: %s %v, want %s", ref, got, err, want)
		}
	}
}

// TestExamplesEnvironment runs every example's environment through the
// daemon's own parser (cmd/internal/config, importable only from cmd/): no
// unknown variable, no bad value.
func TestExamplesEnvironment(t *testing.T) {
	files, err := fs.Glob(deploy.Examples, "examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("examples: %v %v", files, err)
	}

	for _, f := range files {
		raw, err := fs.ReadFile(deploy.Examples, f)
		if err != nil {
			t.Fatal(err)
		}

		patches := []string{string(raw)}

		var tcp struct {
			Kind string `yaml:"kind"`
			Spec struct {
				ControlPlaneConfig struct {
					ControlPlane struct {
						StrategicPatches []string `yaml:"strategicPatches"`
					} `yaml:"controlplane"`
				} `yaml:"controlPlaneConfig"`
			} `yaml:"spec"`
		}

		if err := yaml.Unmarshal(raw, &tcp); err != nil {
			t.Fatal(err)
		}

		if tcp.Kind == "TalosControlPlane" {
			patches = tcp.Spec.ControlPlaneConfig.ControlPlane.StrategicPatches
		}

		for _, p := range patches {
			loaded, err := configpatcher.LoadPatch([]byte(p))
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}

			smp, ok := loaded.(configpatcher.StrategicMergePatch)
			if !ok {
				t.Fatalf("%s: not a strategic merge patch", f)
			}

			cfg, ok := smp.Provider().(*container.Container)
			if !ok {
				t.Fatalf("%s: unexpected provider %T", f, smp.Provider())
			}

			escs := cfg.ExtensionServiceConfigs()
			if len(escs) != 1 {
				t.Fatalf("%s: %d ExtensionServiceConfig documents, want 1", f, len(escs))
			}

			for _, esc := range escs {
				got, err := config.Load(esc.Environment())
				if err != nil {
					t.Errorf("%s: %v", path.Base(f), err)
				}

				if got.QuorumNodes < 1 {
					t.Errorf("%s: quorum %d", path.Base(f), got.QuorumNodes)
				}
			}
		}
	}
}

// TestMountsCoverDaemonPaths checks that the service spec mounts every host
// path the daemon reads or writes by default, writable where it writes.
func TestMountsCoverDaemonPaths(t *testing.T) {
	spec, err := imagebuild.DecodeServiceSpec(deploy.ServiceSpec)
	if err != nil {
		t.Fatal(err)
	}

	d := config.Defaults()

	need := map[string]bool{ // path -> must be writable
		d.SecretsDir: false,
		d.ProcDir:    false,
		d.StatusDir:  true,
		d.RunDir:     true,
	}

	for _, dev := range d.StateDevices {
		need[dev] = false
	}

	for p, writable := range need {
		var covering string

		rw := false

		for _, m := range spec.Container.Mounts {
			if (p == m.Destination || strings.HasPrefix(p, m.Destination+"/")) && len(m.Destination) > len(covering) {
				covering, rw = m.Destination, slices.Contains(m.Options, "rw")
			}
		}

		if covering == "" {
			t.Errorf("%s is not mounted into the container", p)

			continue
		}

		if writable && !rw {
			t.Errorf("%s is mounted read-only (through %s), the daemon writes there", p, covering)
		}
	}
}
