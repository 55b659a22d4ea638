package e2e

import (
	"strings"
	"testing"
)

// Discovery beyond one IPv4 segment: the shipped binary, run as
// Talos runs the extension, finds its peers through Talos cluster
// discovery across a router and on an IPv6-only segment, through PEERS on
// IPv6, and still through the sweep when discovery is disabled.

// testRoutedSubnets: two control-plane nodes on 198.18.0.0/24, the third
// on 198.18.1.0/24 behind the router namespace. The sweep of each /24
// cannot see across; Talos cluster discovery names all three.
func testRoutedSubnets(t *testing.T, art artifacts) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")
	nodes := []*node{
		w.addNode(nodeSpec{name: "cp1", cluster: c, bootTime: w.booted(2)}),
		w.addNode(nodeSpec{name: "cp2", cluster: c, bootTime: w.booted(3)}),
		w.addNode(nodeSpec{name: "cp3", cluster: c, bootTime: w.booted(1), segment: 1}),
	}

	for _, n := range nodes {
		n.startAPID()
	}

	runs := startDaemons(3, nodes...)

	w.waitAll(scenarioTimeout, runs...)
	expectDone(t, runs...)

	got := expectOneBootstrap(t, w, c, nodes[2], nodes...)
	expectJoined(t, got, nodes...)
	expectFoundBy(t, runs, "members", 2)
	figures(t, "routed", lastStarted(runs...), &got, runs...)

	w.dumpIfFailed(t)
}

// testIPv6Only: three control-plane nodes with only IPv6 addresses (a ULA
// /64, never swept). With the default sources they find each other through
// members; with DISCOVERY=peers through an IPv6 PEERS list.
func testIPv6Only(t *testing.T, art artifacts, viaPeers bool) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")
	nodes := make([]*node, 3)

	for i, m := range []int{2, 1, 3} {
		nodes[i] = w.addNode(nodeSpec{name: "cp" + string(rune('1'+i)), cluster: c, bootTime: w.booted(m), segment: segmentIPv6})
		nodes[i].startAPID()
	}

	source := "members"

	var extra []string

	if viaPeers {
		source = "peers"
		peers := make([]string, len(nodes))

		for i, n := range nodes {
			peers[i] = n.ip.String()
		}

		extra = []string{"TALOS_AUTO_BOOTSTRAP_DISCOVERY=peers", "TALOS_AUTO_BOOTSTRAP_PEERS=" + strings.Join(peers, ",")}
	}

	runs := make([]*proc, 0, len(nodes))
	for _, n := range nodes {
		runs = append(runs, n.startDaemon(daemonEnv(3, extra...)))
	}

	w.waitAll(scenarioTimeout, runs...)
	expectDone(t, runs...)

	got := expectOneBootstrap(t, w, c, nodes[1], nodes...)
	expectJoined(t, got, nodes...)
	expectFoundBy(t, runs, source, 2)

	if !viaPeers {
		// The /64 is not swept, and the log says what finds peers instead.
		for _, p := range runs {
			if !hasMessage(t, p, "the local network is not swept, too large; discovery relies on the other sources: members (Talos cluster discovery), TALOS_AUTO_BOOTSTRAP_PEERS or a narrower TALOS_AUTO_BOOTSTRAP_SCAN_CIDR") {
				t.Errorf("%s: no line saying the /64 is not swept", p.name)
			}
		}
	}

	figures(t, "ipv6-"+source, lastStarted(runs...), &got, runs...)

	w.dumpIfFailed(t)
}

// testDiscoveryDisabled: the machine configs disable cluster discovery (an
// air-gapped site): members is skipped, said once, and the /24 sweep finds
// the cluster.
func testDiscoveryDisabled(t *testing.T, art artifacts) {
	w := newWorld(t, art)
	defer w.close()

	c := newCluster(t, w.dir, "alpha")
	nodes := make([]*node, 3)

	for i, m := range []int{3, 1, 2} {
		nodes[i] = w.addNode(nodeSpec{name: "cp" + string(rune('1'+i)), cluster: c, bootTime: w.booted(m), fakeArgs: []string{"--discovery-disabled"}})
		nodes[i].startAPID()
	}

	runs := startDaemons(3, nodes...)

	w.waitAll(scenarioTimeout, runs...)
	expectDone(t, runs...)

	got := expectOneBootstrap(t, w, c, nodes[1], nodes...)
	expectJoined(t, got, nodes...)
	expectFoundBy(t, runs, "scan", 2)
	expectFoundBy(t, runs, "members", 0)

	for _, p := range runs {
		n := 0

		for _, l := range readLog(t, p.stdout) {
			if l.msg() == "discovery source unavailable, skipped" && l.str("source") == "members" && strings.Contains(l.str("error"), "disabled") {
				n++
			}
		}

		if n != 1 {
			t.Errorf("%s: %d lines saying members is skipped because discovery is disabled, want 1", p.name, n)
		}
	}

	w.dumpIfFailed(t)
}

// expectFoundBy checks that each daemon's last discovery round credits
// source with want candidates.
func expectFoundBy(t *testing.T, runs []*proc, source string, want int) {
	t.Helper()

	for _, p := range runs {
		var last logLine

		for _, l := range readLog(t, p.stdout) {
			if l.msg() == "peer discovery complete" {
				last = l
			}
		}

		by, _ := last["by_source"].(map[string]any)
		if got, _ := by[source].(float64); last == nil || int(got) != want {
			t.Errorf("%s: last peer discovery %v: %s named %v candidates, want %d", p.name, last, source, by[source], want)
		}
	}
}
