package config

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestDefaultsAreTheOriginalDesigns(t *testing.T) {
	cfg, err := Load(nil)
	if err != nil {
		t.Fatalf("Load(nil) = %v", err)
	}

	if cfg.LogLevel != zerolog.InfoLevel || cfg.ScanInterval != 30*time.Second ||
		cfg.FollowerCheckInterval != 15*time.Second || cfg.QuorumNodes != 1 ||
		cfg.PreBootstrapDelay != 10*time.Second || cfg.MaxBackoff != 2*time.Minute ||
		cfg.ScanTimeout != 2*time.Second || cfg.MaxScanHosts != 65536 || cfg.APIDPort != 50000 ||
		cfg.LeaderOrder != "address" {
		t.Fatalf("defaults differ from the upstream README's: %+v", cfg)
	}
}

func TestValuesParse(t *testing.T) {
	cfg, err := Load([]string{
		"LOG_LEVEL=DEBUG",
		"TALOS_AUTO_BOOTSTRAP_QUORUM_NODES=3",
		"TALOS_AUTO_BOOTSTRAP_LEADER_ORDER=address",
		"TALOS_AUTO_BOOTSTRAP_PRE_BOOTSTRAP_DELAY=20s",
		"TALOS_AUTO_BOOTSTRAP_PEERS=10.0.0.6, 10.0.0.5",
		"TALOS_AUTO_BOOTSTRAP_BREAK_LOCK=10.0.0.5/6f2c1c3e-5a1b-4c7d-9e0f-123456789abc/2",
		"PATH=/bin",
	})
	if err != nil {
		t.Fatal(err)
	}

	if cfg.LogLevel != zerolog.DebugLevel || cfg.QuorumNodes != 3 || cfg.PreBootstrapDelay != 20*time.Second || cfg.LeaderOrder != "address" {
		t.Fatalf("cfg = %+v", cfg)
	}

	if len(cfg.Peers) != 2 || cfg.Peers[0] != netip.MustParseAddr("10.0.0.6") {
		t.Fatalf("peers = %v", cfg.Peers)
	}

	if cfg.BreakLock == nil || cfg.BreakLock.String() != "10.0.0.5/6f2c1c3e-5a1b-4c7d-9e0f-123456789abc/2" {
		t.Fatalf("break lock = %v", cfg.BreakLock)
	}
}

func TestInvalidValuesNameTheVariable(t *testing.T) {
	cases := []struct{ env, variable string }{
		{"TALOS_AUTO_BOOTSTRAP_QUORUM_NODES=three", "TALOS_AUTO_BOOTSTRAP_QUORUM_NODES"},
		{"TALOS_AUTO_BOOTSTRAP_QUORUM_NODES=0", "TALOS_AUTO_BOOTSTRAP_QUORUM_NODES"},
		{"TALOS_AUTO_BOOTSTRAP_LEADER_ORDER=oldest", "TALOS_AUTO_BOOTSTRAP_LEADER_ORDER"},
		{"TALOS_AUTO_BOOTSTRAP_LEADER_ORDER=", "TALOS_AUTO_BOOTSTRAP_LEADER_ORDER"},
		{"TALOS_AUTO_BOOTSTRAP_SCAN_INTERVAL=30", "TALOS_AUTO_BOOTSTRAP_SCAN_INTERVAL"},
		{"TALOS_AUTO_BOOTSTRAP_MAX_BACKOFF=-1s", "TALOS_AUTO_BOOTSTRAP_MAX_BACKOFF"},
		{"TALOS_AUTO_BOOTSTRAP_SCAN_CONCURRENCY=100000", "TALOS_AUTO_BOOTSTRAP_SCAN_CONCURRENCY"},
		{"TALOS_AUTO_BOOTSTRAP_SCAN_CIDR=10.0.0.0/33", "TALOS_AUTO_BOOTSTRAP_SCAN_CIDR"},
		{"TALOS_AUTO_BOOTSTRAP_PEERS=10.0.0.1,nope", "TALOS_AUTO_BOOTSTRAP_PEERS"},
		{"TALOS_AUTO_BOOTSTRAP_TALOSCONFIG=relative/path", "TALOS_AUTO_BOOTSTRAP_TALOSCONFIG"},
		{"TALOS_AUTO_BOOTSTRAP_BREAK_LOCK=10.0.0.5", "TALOS_AUTO_BOOTSTRAP_BREAK_LOCK"},
		{"TALOS_AUTO_BOOTSTRAP_SCAN_TIMEOUT=1ms", "TALOS_AUTO_BOOTSTRAP_SCAN_TIMEOUT"},
		{"TALOS_AUTO_BOOTSTRAP_FOLLOWER_CHECK_INTERVAL=0s", "TALOS_AUTO_BOOTSTRAP_FOLLOWER_CHECK_INTERVAL"},
		{"LOG_LEVEL=verbose", "LOG_LEVEL"},
		{"TALOS_AUTO_BOOTSTRAP_DISCOVERY=members,dns", "TALOS_AUTO_BOOTSTRAP_DISCOVERY"},
		{"TALOS_AUTO_BOOTSTRAP_DISCOVERY=", "TALOS_AUTO_BOOTSTRAP_DISCOVERY"},
		// peers listed without PEERS
		{"TALOS_AUTO_BOOTSTRAP_DISCOVERY=members,peers", "TALOS_AUTO_BOOTSTRAP_DISCOVERY"},
		{"TALOS_AUTO_BOOTSTRAP_SCAN_CIDR=fe80::/120%eth0", "TALOS_AUTO_BOOTSTRAP_SCAN_CIDR"},
	}

	for _, c := range cases {
		_, err := Load([]string{c.env})
		if err == nil || !IsInvalid(err) || !strings.Contains(err.Error(), c.variable) {
			t.Errorf("%s: err = %v, want an InvalidError naming %s", c.env, err, c.variable)
		}
	}
}

// An unknown variable of the daemon's prefix is most likely a misspelt
// setting; QUORUM_NODES misspelt would leave a quorum of 1. It stops the
// daemon, naming the variable and, when one is close, the known name.
func TestUnknownVariablesStopTheDaemon(t *testing.T) {
	for _, c := range []struct {
		env      []string
		variable string
		hint     string
	}{
		{[]string{"TALOS_AUTO_BOOTSTRAP_QUORUM=3", "TALOS_AUTO_BOOTSTRAP_QUORUM_NODES=3"}, "TALOS_AUTO_BOOTSTRAP_QUORUM", "did you mean TALOS_AUTO_BOOTSTRAP_QUORUM_NODES?"},
		{[]string{"TALOS_AUTO_BOOTSTRAP_QUORUM_NODE=3"}, "TALOS_AUTO_BOOTSTRAP_QUORUM_NODE", "did you mean TALOS_AUTO_BOOTSTRAP_QUORUM_NODES?"},
		{[]string{"TALOS_AUTO_BOOTSTRAP_LEADER_ODRER=address"}, "TALOS_AUTO_BOOTSTRAP_LEADER_ODRER", "did you mean TALOS_AUTO_BOOTSTRAP_LEADER_ORDER?"},
		{[]string{"TALOS_AUTO_BOOTSTRAP_COLOUR=blue", "TALOS_AUTO_BOOTSTRAP_ZZZ=1"}, "TALOS_AUTO_BOOTSTRAP_COLOUR", ""},
	} {
		_, err := Load(c.env)

		var invalid *InvalidError
		if !errors.As(err, &invalid) || invalid.Variable != c.variable {
			t.Errorf("%v: err = %v, want an InvalidError naming %s", c.env, err, c.variable)

			continue
		}

		if got := strings.Contains(err.Error(), "did you mean"); got != (c.hint != "") || !strings.Contains(err.Error(), c.hint) {
			t.Errorf("%v: %q, want the hint %q", c.env, err, c.hint)
		}
	}

	// Other variables (and LOG_LEVEL) are not the daemon's to judge.
	if _, err := Load([]string{"HOME=/root", "TALOS_AUTO_BOOTSTRAP=1", "LOG_LEVEL=debug"}); err != nil {
		t.Fatalf("variables outside the prefix: %v", err)
	}
}

// Short intervals are legitimate (tests, small labs): one variable alone
// never fails because of another's default.
func TestShortIntervalsAlone(t *testing.T) {
	for _, env := range []string{
		"TALOS_AUTO_BOOTSTRAP_SCAN_INTERVAL=1s",
		"TALOS_AUTO_BOOTSTRAP_FOLLOWER_CHECK_INTERVAL=500ms",
		"TALOS_AUTO_BOOTSTRAP_MAX_BACKOFF=500ms",
		"TALOS_AUTO_BOOTSTRAP_PRE_BOOTSTRAP_DELAY=0s",
	} {
		if _, err := Load([]string{env}); err != nil {
			t.Errorf("%s: %v", env, err)
		}
	}
}

func TestDiscoverySources(t *testing.T) {
	for _, tc := range []struct {
		env     []string
		want    string
		wantErr string
	}{
		{env: nil, want: "members,scan"},
		{env: []string{"TALOS_AUTO_BOOTSTRAP_PEERS=fd00::5,10.0.0.6"}, want: "members,peers"},
		{env: []string{"TALOS_AUTO_BOOTSTRAP_SCAN_CIDR=fd00:10::/120"}, want: "members,scan"},
		{env: []string{"TALOS_AUTO_BOOTSTRAP_DISCOVERY=scan"}, want: "scan"},
		{env: []string{"TALOS_AUTO_BOOTSTRAP_DISCOVERY=peers, members", "TALOS_AUTO_BOOTSTRAP_PEERS=10.0.0.5"}, want: "peers,members"},
		{env: []string{"TALOS_AUTO_BOOTSTRAP_DISCOVERY=scan,peers", "TALOS_AUTO_BOOTSTRAP_PEERS=10.0.0.5"}, want: "scan,peers"},
		{env: []string{"TALOS_AUTO_BOOTSTRAP_DISCOVERY=members", "TALOS_AUTO_BOOTSTRAP_PEERS=10.0.0.5"}, wantErr: "PEERS would be ignored"},
		{env: []string{"TALOS_AUTO_BOOTSTRAP_DISCOVERY=members", "TALOS_AUTO_BOOTSTRAP_SCAN_CIDR=10.0.0.0/24"}, wantErr: "SCAN_CIDR would be ignored"},
	} {
		cfg, err := Load(tc.env)
		if tc.wantErr != "" {
			if err == nil || !IsInvalid(err) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "TALOS_AUTO_BOOTSTRAP_DISCOVERY") {
				t.Errorf("%v: err %v, want an InvalidError naming DISCOVERY: %q", tc.env, err, tc.wantErr)
			}

			continue
		}

		if err != nil {
			t.Errorf("%v: %v", tc.env, err)

			continue
		}

		var names []string
		for _, s := range cfg.Sources() {
			names = append(names, string(s))
		}

		if got := strings.Join(names, ","); got != tc.want {
			t.Errorf("%v: sources %s, want %s", tc.env, got, tc.want)
		}
	}
}
