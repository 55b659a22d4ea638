package deploy_test

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config"
	coreconfig "github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/configpatcher"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/extensions/services"
	"github.com/siderolabs/talos/pkg/machinery/nethelpers"
	"go.yaml.in/yaml/v4"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/deploy"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/deploy/imagebuild"
)

func TestServiceSpec(t *testing.T) {
	if err := imagebuild.CheckServiceSpec(deploy.ServiceSpec); err != nil {
		t.Fatal(err)
	}

	spec, err := imagebuild.DecodeServiceSpec(deploy.ServiceSpec)
	if err != nil {
		t.Fatal(err)
	}

	if spec.Restart != services.RestartUntilSuccess {
		t.Errorf("restart %s, want untilSuccess", spec.Restart)
	}

	var (
		svcDeps    []string
		network    []nethelpers.Status
		configWait bool
	)

	for _, d := range spec.Depends {
		switch {
		case d.Service != "":
			svcDeps = append(svcDeps, d.Service)
		case len(d.Network) > 0:
			network = append(network, d.Network...)
		case d.Configuration:
			configWait = true
		default:
			t.Errorf("unexpected dependency %+v", d)
		}
	}

	if !slices.Equal(svcDeps, []string{"apid"}) {
		t.Errorf("service dependencies %v, want [apid]", svcDeps)
	}

	if !slices.Equal(network, []nethelpers.Status{nethelpers.StatusAddresses, nethelpers.StatusConnectivity}) {
		t.Errorf("network dependencies %v, want [addresses connectivity]", network)
	}

	if !configWait {
		t.Error("service does not wait for its ExtensionServiceConfig")
	}

	if spec.LogToConsole {
		t.Error("logToConsole is on: the daemon's per-round lines would fill the console")
	}

	// The least mounts that work; the only writable ones are the daemon's own
	// directories (not all of /run).
	want := map[string]specs.Mount{
		"/system/secrets":                  {Source: "/system/secrets", Type: "bind", Options: []string{"bind", "ro"}},
		"/host/proc":                       {Source: "/proc", Type: "bind", Options: []string{"bind", "ro"}},
		"/dev":                             {Source: "/dev", Type: "bind", Options: []string{"bind", "ro"}},
		"/run/kommodity-autobootstrap":     {Source: "/run/kommodity-autobootstrap", Type: "bind", Options: []string{"bind", "rw", "rprivate"}},
		"/var/lib/kommodity-autobootstrap": {Source: "/var/lib/kommodity-autobootstrap", Type: "bind", Options: []string{"bind", "rw"}},
	}

	if len(spec.Container.Mounts) != len(want) {
		t.Errorf("%d mounts, want %d", len(spec.Container.Mounts), len(want))
	}

	for _, m := range spec.Container.Mounts {
		w, ok := want[m.Destination]
		if !ok {
			t.Errorf("unexpected mount %+v", m)

			continue
		}

		w.Destination = m.Destination
		if m.Source != w.Source || m.Type != w.Type || !slices.Equal(m.Options, w.Options) {
			t.Errorf("mount %s: %+v, want %+v", m.Destination, m, w)
		}

		// No shared propagation: the STATE mounts must never reach the host.
		for _, o := range m.Options {
			if strings.Contains(o, "shared") {
				t.Errorf("mount %s propagates to the host (%s)", m.Destination, o)
			}
		}
	}
}

func TestServiceSpecRefusesMistakes(t *testing.T) {
	spec := string(deploy.ServiceSpec)

	for name, raw := range map[string]string{
		// machined would ignore the unknown key and drop the dependency.
		"misspelt key":                strings.Replace(spec, "  - configuration: true", "  - configurations: true", 1),
		"two kinds in one dependency": strings.Replace(spec, "  - configuration: true", "  - configuration: true\n    service: apid", 1),
		"bad restart":                 strings.Replace(spec, "restart: untilSuccess", "restart: sometimes", 1),
		"other name":                  strings.Replace(spec, "name: kommodity-autobootstrap", "name: other", 1),
		"relative entrypoint":         strings.Replace(spec, "entrypoint: /kommodity-autobootstrap-extension", "entrypoint: kommodity-autobootstrap-extension", 1),
	} {
		if raw == spec {
			t.Fatalf("%s: replacement did not apply", name)
		}

		if err := imagebuild.CheckServiceSpec([]byte(raw)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// metal is the runtime mode Talos validates installed machine configs with.
type metal struct{}

func (metal) String() string        { return "metal" }
func (metal) RequiresInstall() bool { return true }
func (metal) InContainer() bool     { return false }

// capiPatch takes the strategic patches out of a TalosControlPlane, as the
// bootstrap provider does before applying them.
type talosControlPlane struct {
	Kind string `yaml:"kind"`
	Spec struct {
		Replicas           int `yaml:"replicas"`
		ControlPlaneConfig struct {
			ControlPlane struct {
				GenerateType     string   `yaml:"generateType"`
				StrategicPatches []string `yaml:"strategicPatches"`
			} `yaml:"controlplane"`
		} `yaml:"controlPlaneConfig"`
	} `yaml:"spec"`
}

type example struct {
	file     string
	patch    []byte
	replicas int // from the TalosControlPlane, 0 otherwise
}

func examples(t *testing.T) []example {
	t.Helper()

	files, err := fs.Glob(deploy.Examples, "examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}

	want := []string{"capi-taloscontrolplane.yaml", "ha-3-nodes.yaml", "single-node.yaml", "talosconfig-credentials.yaml"}

	var got []string
	for _, f := range files {
		got = append(got, path.Base(f))
	}

	if !slices.Equal(got, want) {
		t.Fatalf("examples %v, want %v", got, want)
	}

	var out []example

	for _, f := range files {
		raw, err := fs.ReadFile(deploy.Examples, f)
		if err != nil {
			t.Fatal(err)
		}

		var probe struct {
			Kind string `yaml:"kind"`
		}

		if err := yaml.Unmarshal(raw, &probe); err != nil {
			t.Fatalf("%s: %v", f, err)
		}

		if probe.Kind != "TalosControlPlane" {
			out = append(out, example{file: f, patch: raw})

			continue
		}

		var tcp talosControlPlane
		if err := yaml.Unmarshal(raw, &tcp); err != nil {
			t.Fatalf("%s: %v", f, err)
		}

		cp := tcp.Spec.ControlPlaneConfig.ControlPlane
		if cp.GenerateType != "controlplane" || len(cp.StrategicPatches) != 1 {
			t.Fatalf("%s: want one strategic patch for generateType controlplane, got %q with %d", f, cp.GenerateType, len(cp.StrategicPatches))
		}

		out = append(out, example{file: f, patch: []byte(cp.StrategicPatches[0]), replicas: tcp.Spec.Replicas})
	}

	return out
}

func controlPlaneConfig(t *testing.T) []byte {
	t.Helper()

	bundle, err := secrets.NewBundle(secrets.NewFixedClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), config.TalosVersionCurrent)
	if err != nil {
		t.Fatal(err)
	}

	in, err := generate.NewInput("demo", "https://10.0.0.10:6443", "1.34.1", generate.WithSecretsBundle(bundle), generate.WithInstallDisk("/dev/sda"))
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := in.Config(machine.TypeControlPlane)
	if err != nil {
		t.Fatal(err)
	}

	raw, err := cfg.Bytes()
	if err != nil {
		t.Fatal(err)
	}

	return raw
}

func TestExamples(t *testing.T) {
	base := controlPlaneConfig(t)

	for _, ex := range examples(t) {
		t.Run(path.Base(ex.file), func(t *testing.T) {
			// The patch on its own: a valid ExtensionServiceConfig document.
			doc, err := configloader.NewFromBytes(ex.patch)
			if err != nil {
				t.Fatalf("configloader: %v", err)
			}

			if _, err := doc.Validate(metal{}); err != nil {
				t.Fatalf("validate: %v", err)
			}

			esc := ours(t, doc)

			// Applied to a real control-plane config, as talosctl gen config
			// --config-patch-control-plane and the CAPI bootstrap provider do.
			patch, err := configpatcher.LoadPatch(ex.patch)
			if err != nil {
				t.Fatalf("load patch: %v", err)
			}

			out, err := configpatcher.Apply(configpatcher.WithBytes(base), []configpatcher.Patch{patch})
			if err != nil {
				t.Fatalf("apply patch: %v", err)
			}

			patched, err := out.Config()
			if err != nil {
				t.Fatal(err)
			}

			if _, err := patched.Validate(metal{}); err != nil {
				t.Fatalf("patched machine config: %v", err)
			}

			applied := ours(t, patched)
			if !slices.Equal(applied.Environment(), esc.Environment()) {
				t.Errorf("environment after patching %v, want %v", applied.Environment(), esc.Environment())
			}

			if ex.replicas != 0 {
				if q := env(esc, "TALOS_AUTO_BOOTSTRAP_QUORUM_NODES"); q != strconv.Itoa(ex.replicas) {
					t.Errorf("QUORUM_NODES %q, but the TalosControlPlane has %d replicas", q, ex.replicas)
				}
			}

			checkConfigFiles(t, esc)
		})
	}
}

func ours(t *testing.T, cfg coreconfig.Config) coreconfig.ExtensionServiceConfig {
	t.Helper()

	var found []coreconfig.ExtensionServiceConfig

	for _, esc := range cfg.ExtensionServiceConfigs() {
		if esc.Name() == imagebuild.ExtensionName {
			found = append(found, esc)
		}
	}

	if len(found) != 1 {
		t.Fatalf("%d ExtensionServiceConfig documents named %s, want 1", len(found), imagebuild.ExtensionName)
	}

	if len(found[0].Environment()) == 0 {
		t.Fatal("no environment")
	}

	return found[0]
}

func env(esc coreconfig.ExtensionServiceConfig, key string) string {
	for _, kv := range esc.Environment() {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}

	return ""
}

// checkConfigFiles: a talosconfig handed over as a config file must parse,
// carry client credentials, be the file the daemon is pointed at, and be
// mounted where it does not collide with the service's own mounts.
func checkConfigFiles(t *testing.T, esc coreconfig.ExtensionServiceConfig) {
	t.Helper()

	path := env(esc, "TALOS_AUTO_BOOTSTRAP_TALOSCONFIG")
	files := esc.ConfigFiles()

	if path == "" && len(files) == 0 {
		return
	}

	if len(files) != 1 || files[0].MountPath() != path {
		t.Fatalf("TALOSCONFIG=%q, config files %v: want exactly that file", path, files)
	}

	spec, err := imagebuild.DecodeServiceSpec(deploy.ServiceSpec)
	if err != nil {
		t.Fatal(err)
	}

	for _, m := range spec.Container.Mounts {
		if strings.HasPrefix(path+"/", m.Destination+"/") {
			t.Errorf("talosconfig mount %s lies inside the service mount %s", path, m.Destination)
		}
	}

	tc, err := clientconfig.FromString(files[0].Content())
	if err != nil {
		t.Fatalf("talosconfig: %v", err)
	}

	ctx, ok := tc.Contexts[tc.Context]
	if !ok {
		t.Fatalf("talosconfig: context %q missing", tc.Context)
	}

	if ctx.CA == "" || ctx.Crt == "" || ctx.Key == "" || len(ctx.Endpoints) == 0 {
		t.Errorf("talosconfig context %q lacks ca, crt, key or endpoints: %s", tc.Context, fmt.Sprint(ctx))
	}
}

// TestDockerfile checks the properties the reference Containerfile lacked:
// no architecture written into it, cross-compilation for the target
// platform, the same build settings as make, and a scratch image holding
// only the extension tree (laid out by cmd/build-image).
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}

	var (
		lines []string
		froms []string
	)

	for _, l := range strings.Split(string(raw), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}

		lines = append(lines, l)

		if strings.HasPrefix(l, "FROM ") {
			froms = append(froms, l)
		}
	}

	code := strings.Join(lines, "\n")

	for _, arch := range []string{"amd64", "arm64", "x86_64", "aarch64"} {
		if strings.Contains(code, arch) {
			t.Errorf("Dockerfile hard-codes %s", arch)
		}
	}

	for _, want := range []string{
		"ARG TARGETARCH",
		"GOARCH=${TARGETARCH}",
		"CGO_ENABLED=0",
		"-trimpath",
		`-ldflags "-s -w -X main.version=${VERSION}"`,
		"./cmd/" + path.Base(imagebuild.MainPackage),
		"go run ./cmd/build-image",
		"-rootfs /out/tree",
		`-version "${VERSION}"`,
		`-revision "${REVISION}"`,
		"COPY --from=build /out/tree/ /",
	} {
		if !strings.Contains(code, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}

	if len(froms) != 2 || !strings.Contains(froms[0], "--platform=$BUILDPLATFORM") || froms[1] != "FROM scratch" {
		t.Errorf("stages %q: want a build stage on $BUILDPLATFORM and a scratch final stage", froms)
	}
}
