package daemon_test

import (
	"strings"
	"testing"
	"time"

	daemonconfig "github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/config"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

// The daemons find each other only through Talos cluster discovery (no
// PEERS, a /32 network with nothing to sweep), bootstrap once, and say in
// "peer discovery complete" which source named the peers.
func TestDiscoveryThroughMembers(t *testing.T) {
	oldest := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	cp := func(age int) node {
		return node{fake: fakeapid.Node{MachineType: transport.MachineTypeControlPlane, BootTime: oldest.Add(time.Duration(age) * time.Minute)}}
	}

	names := []string{"cp1", "cp2", "cp3"}
	r := runCluster(t, 90, 3, names, map[string]node{"cp1": cp(1), "cp2": cp(0), "cp3": cp(2)}, 5*time.Minute,
		func(c *daemonconfig.Config) {
			c.Peers = nil
			c.Discovery = []discovery.SourceName{discovery.SourceMembers}
		})

	if len(r.clusters) != 1 || r.clusters[0].Founder != r.servers["cp2"].Node().IP.String() {
		t.Fatalf("clusters %+v, want one founded by cp2 (the oldest)", r.clusters)
	}

	for _, name := range names {
		res := r.results[name]
		if res.err != nil {
			t.Errorf("%s: %v\n%s", name, res.err, res.logs)
		}

		lines := logLines(res.logs, "peer discovery complete")
		if len(lines) == 0 {
			t.Fatalf("%s: no peer discovery line\n%s", name, res.logs)
		}

		last := lines[len(lines)-1]
		by, _ := last["by_source"].(map[string]any)

		if last["peers_found"] != float64(2) || by["members"] != float64(2) || len(by) != 1 {
			t.Errorf("%s: last discovery line %v, want 2 peers, all from members", name, last)
		}
	}
}

// With discovery disabled in the machine config, members is skipped with
// one line saying so, and PEERS still finds the cluster.
func TestDiscoveryDisabledFallsBackToPeers(t *testing.T) {
	oldest := time.Now().Add(-3 * time.Hour).Truncate(time.Second)
	cp := func(age int) node {
		return node{fake: fakeapid.Node{MachineType: transport.MachineTypeControlPlane, DiscoveryDisabled: true, BootTime: oldest.Add(time.Duration(age) * time.Minute)}}
	}

	names := []string{"cp1", "cp2"}
	r := runCluster(t, 91, 2, names, map[string]node{"cp1": cp(0), "cp2": cp(1)}, 5*time.Minute, nil)

	if len(r.clusters) != 1 {
		t.Fatalf("clusters %+v, want one", r.clusters)
	}

	for _, name := range names {
		res := r.results[name]
		if res.err != nil {
			t.Errorf("%s: %v", name, res.err)
		}

		skipped := logLines(res.logs, "discovery source unavailable, skipped")
		if len(skipped) != 1 || skipped[0]["level"] != "info" || !strings.Contains(skipped[0]["error"].(string), "disabled") {
			t.Errorf("%s: want one info line saying discovery is disabled, got %v\n%s", name, skipped, res.logs)
		}

		lines := logLines(res.logs, "peer discovery complete")
		by, _ := lines[len(lines)-1]["by_source"].(map[string]any)

		if by["peers"] != float64(1) || by["members"] != float64(0) {
			t.Errorf("%s: by source %v, want 1 from peers, 0 from members", name, by)
		}
	}
}
