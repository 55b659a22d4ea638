package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

type logLine struct {
	Message string   `json:"message"`
	Listen  []string `json:"listen"`
	Method  string   `json:"method"`
	Code    string   `json:"code"`
	Node    string   `json:"node"`
	BootID  string   `json:"bootID"`

	DiscoveryAddrs []string `json:"discoveryAddrs"`
}

func TestServeAndLog(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")

	if err := run(t.Context(), []string{"gen-ca", cert, key}, io.Discard); err != nil {
		t.Fatal(err)
	}

	pki, err := fakeapid.LoadPKI(cert, key)
	if err != nil {
		t.Fatal(err)
	}

	bootID := "6f1c3a52-8a3e-4f57-9f0e-2d6a1f7c9b10"

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	out, stdout := io.Pipe()
	done := make(chan error, 1)

	go func() {
		done <- run(ctx, []string{
			"--listen", "127.0.30.1:0",
			"--ca-cert", cert, "--ca-key", key,
			"--registry-dir", filepath.Join(dir, "registry"),
			"--boot-id", bootID, "--boot-time", "1700000000",
			"--time-sync-wait", "10ms",
			"--discovery-addrs", "127.0.30.1,fd00:198:18::30",
		}, stdout)

		stdout.Close() //nolint:errcheck
	}()

	lines := make(chan logLine, 16)

	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var l logLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				t.Errorf("log line %q is not JSON: %v", sc.Text(), err)

				continue
			}

			lines <- l
		}

		close(lines)
	}()

	next := func() logLine {
		t.Helper()

		select {
		case l := <-lines:
			return l
		case err := <-done:
			t.Fatalf("fakeapid exited: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no log line")
		}

		return logLine{}
	}

	first := next()
	if first.Message != "listening" || len(first.Listen) != 1 || first.BootID != bootID ||
		!slices.Equal(first.DiscoveryAddrs, []string{"127.0.30.1", "fd00:198:18::30"}) {
		t.Fatalf("first line = %+v, want listening with the boot id and discovery addresses", first)
	}

	id, err := pki.AdminIdentity(time.Now().Add(-time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	n, err := transport.NewDialer(id).Dial(t.Context(), netip.MustParseAddrPort(first.Listen[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close() //nolint:errcheck

	if err := n.Bootstrap(t.Context()); err != nil {
		t.Fatal(err)
	}

	if got := next(); got.Method != machine.MachineService_Bootstrap_FullMethodName || got.Code != "OK" || got.Node != "127.0.30.1" {
		t.Errorf("call line = %+v, want an OK Bootstrap on 127.0.30.1", got)
	}

	// the registry on disk saw the bootstrap
	reg, err := fakeapid.OpenRegistry(filepath.Join(dir, "registry"))
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close() //nolint:errcheck

	clusters, err := reg.Clusters()
	if err != nil || len(clusters) != 1 || clusters[0].Founder != "127.0.30.1" {
		t.Errorf("clusters = %+v, %v; want one founded by 127.0.30.1", clusters, err)
	}

	cancel()

	if err := <-done; err != nil {
		t.Errorf("run after cancel: %v", err)
	}
}

func TestFlagErrors(t *testing.T) {
	base := []string{"--listen", "127.0.30.2:0", "--ca-cert", "c", "--ca-key", "k"}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "missing listen", args: []string{"--ca-cert", "c", "--ca-key", "k"}, want: "required"},
		{name: "bad listen", args: []string{"--listen", "nowhere", "--ca-cert", "c", "--ca-key", "k"}, want: "nowhere"},
		{name: "bad fault", args: append(base, "--bootstrap-faults", "none,explode"), want: "explode"},
		{name: "bad boot time", args: append(base, "--boot-time", "yesterday"), want: "--boot-time"},
		{name: "bad member list error", args: append(base, "--etcd-member-list-error", "Sad:x"), want: "Sad"},
		{name: "stray argument", args: append(base, "extra"), want: "extra"},
		{name: "bad discovery address", args: append(base, "--discovery-addrs", "198.18.0.2,fd00::zz"), want: "--discovery-addrs"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFlags(tt.args)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseFlags = %v, want an error naming %q", err, tt.want)
			}
		})
	}

	o, err := parseFlags(append(base, "--listen", "127.0.0.1:50000,198.18.0.2:50000",
		"--bootstrap-faults", "hang,lost-reply", "--etcd-member-list-error", "unavailable:etcdserver: no leader"))
	if err != nil {
		t.Fatal(err)
	}

	if o.node.IP.String() != "198.18.0.2" || len(o.node.BootstrapFaults) != 2 || o.node.EtcdMemberListError == nil {
		t.Errorf("options = %+v", o)
	}
}

func TestDiscoveryFlags(t *testing.T) {
	base := []string{"--listen", "198.18.0.5:50000", "--ca-cert", "c", "--ca-key", "k"}

	o, err := parseFlags(base)
	if err != nil {
		t.Fatal(err)
	}

	// defaults: discovery on, addresses from the node (filled in by Start)
	if o.node.DiscoveryDisabled || o.node.DiscoveryAddrs != nil || o.node.DiscoveryTTL != 0 {
		t.Errorf("defaults = %+v", o.node)
	}

	o, err = parseFlags(append(base, "--discovery-disabled", "--discovery-ttl", "30m",
		"--discovery-addrs", "198.18.0.5, fd00:198:18::5"))
	if err != nil {
		t.Fatal(err)
	}

	want := []netip.Addr{netip.MustParseAddr("198.18.0.5"), netip.MustParseAddr("fd00:198:18::5")}
	if !o.node.DiscoveryDisabled || o.node.DiscoveryTTL != 30*time.Minute || !slices.Equal(o.node.DiscoveryAddrs, want) {
		t.Errorf("node = disabled %v, ttl %v, addrs %v; want true, 30m, %v", o.node.DiscoveryDisabled, o.node.DiscoveryTTL, o.node.DiscoveryAddrs, want)
	}
}

func TestSideroLinkFlag(t *testing.T) {
	base := []string{"--listen", "198.18.0.6:50000", "--ca-cert", "c", "--ca-key", "k"}

	o, err := parseFlags(base)
	if err != nil || o.node.SideroLinkAPI != "" {
		t.Fatalf("default: %q, %v; want no SideroLink", o.node.SideroLinkAPI, err)
	}

	const api = "https://omni.example.com?jointoken=secret"

	if o, err = parseFlags(append(base, "--siderolink-api", api)); err != nil || o.node.SideroLinkAPI != api {
		t.Fatalf("--siderolink-api: %q, %v; want %q", o.node.SideroLinkAPI, err, api)
	}
}
