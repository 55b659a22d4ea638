package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientconfig "github.com/siderolabs/talos/pkg/machinery/client/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/statusreport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

// fakeCluster is n fake apids on 127.0.<subnet>.1..n sharing one port,
// with an admin talosconfig of their CA.
type fakeCluster struct {
	t       *testing.T
	pki     *fakeapid.PKI
	port    uint16
	subnet  byte
	servers map[int]*fakeapid.Server
	dir     string
}

func ip(subnet byte, n int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, subnet, byte(n)}) }

func bootID(subnet byte, n int) string { return fmt.Sprintf("%08x-0000-4000-8000-%012x", subnet, n) }

func incarnation(subnet byte, n int) election.Incarnation {
	return election.Incarnation{IP: ip(subnet, n), BootID: bootID(subnet, n), Node: bootID(subnet, n)}
}

// startCluster starts fake nodes numbered in nodes (others stay silent);
// node n booted n minutes after node 1.
func startCluster(t *testing.T, subnet byte, nodes ...int) *fakeCluster {
	t.Helper()

	return startClusterWith(t, subnet, nil, nodes...)
}

// startClusterWith is startCluster with tweak applied to each node's
// settings before it starts.
func startClusterWith(t *testing.T, subnet byte, tweak func(n int, node *fakeapid.Node), nodes ...int) *fakeCluster {
	t.Helper()

	pki, err := fakeapid.SharedPKI()
	if err != nil {
		t.Fatal(err)
	}

	l, err := net.Listen("tcp", netip.AddrPortFrom(ip(subnet, 1), 0).String())
	if err != nil {
		t.Fatal(err)
	}

	port := uint16(l.Addr().(*net.TCPAddr).Port) //nolint:gosec // a port
	l.Close()                                    //nolint:errcheck

	c := &fakeCluster{t: t, pki: pki, port: port, subnet: subnet, servers: map[int]*fakeapid.Server{}, dir: t.TempDir()}
	registry := fakeapid.NewRegistry()
	booted := time.Now().Add(-time.Hour).Truncate(time.Second)

	for _, n := range nodes {
		root := filepath.Join(c.dir, fmt.Sprint(n))
		if err := os.MkdirAll(filepath.Join(root, statusfile.DefaultDir), 0o700); err != nil {
			t.Fatal(err)
		}

		node := fakeapid.Node{
			IP: ip(subnet, n), BootID: bootID(subnet, n), BootTime: booted.Add(time.Duration(n) * time.Minute), FilesRoot: root,
			DataFillDelay: 20 * time.Millisecond, HealthyDelay: 20 * time.Millisecond, JoinDelay: 20 * time.Millisecond,
		}
		if tweak != nil {
			tweak(n, &node)
		}

		srv, err := fakeapid.Start(fakeapid.Config{PKI: pki, Registry: registry, Listen: []string{netip.AddrPortFrom(ip(subnet, n), port).String()}}, node)
		if err != nil {
			t.Fatal(err)
		}

		t.Cleanup(func() { srv.Close() }) //nolint:errcheck

		c.servers[n] = srv
	}

	return c
}

// writeStatus publishes node n's status, as its daemon would; its
// incarnation is node n's unless st names one.
func (c *fakeCluster) writeStatus(n int, st election.Status) {
	c.t.Helper()

	st.Version = election.StatusVersion
	if st.Incarnation.BootID == "" {
		st.Incarnation = incarnation(c.subnet, n)
	}
	st.BootTime = c.servers[n].Node().BootTime
	st.Reason = cmp(st.Reason, "status of node "+fmt.Sprint(n))

	data, err := election.MarshalStatus(st)
	if err != nil {
		c.t.Fatal(err)
	}

	if err := os.WriteFile(filepath.Join(c.servers[n].FilesRoot(), statusfile.Path), data, 0o600); err != nil {
		c.t.Fatal(err)
	}
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}

	return b
}

// talosconfig writes a talosconfig of the cluster's CA with roles, its
// context listing nodes.
func (c *fakeCluster) talosconfig(roles role.Set, nodes ...int) string {
	c.t.Helper()

	crt, err := secrets.NewAdminCertificateAndKey(time.Now().Add(-time.Minute), c.pki.CA, roles, time.Hour)
	if err != nil {
		c.t.Fatal(err)
	}

	cfg := clientconfig.NewConfig("fake", []string{"127.0.0.1"}, c.pki.CA.Crt, crt)
	for _, n := range nodes {
		cfg.Contexts["fake"].Nodes = append(cfg.Contexts["fake"].Nodes, ip(c.subnet, n).String())
	}

	data, err := cfg.Bytes()
	if err != nil {
		c.t.Fatal(err)
	}

	path := filepath.Join(c.dir, "talosconfig-"+strings.Join(roles.Strings(), "-"))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		c.t.Fatal(err)
	}

	return path
}

func (c *fakeCluster) nodes(ns ...int) string {
	var s []string
	for _, n := range ns {
		s = append(s, ip(c.subnet, n).String())
	}

	return strings.Join(s, ",")
}

// status runs the command in-process.
func (c *fakeCluster) status(args ...string) (int, string, string) {
	c.t.Helper()

	var stdout, stderr bytes.Buffer

	args = append(args, "--port", fmt.Sprint(c.port), "--timeout", "20s")
	code := statusCommand(c.t.Context(), args, func(string) string { return "" }, &stdout, &stderr)

	return code, stdout.String(), stderr.String()
}

var admin = role.MakeSet(role.Admin)

func TestStatusHealthyCluster(t *testing.T) {
	c := startCluster(t, 41, 1, 2, 3)

	bootstrapAndWaitHealthy(t, c, 1, 2, 3)

	c.writeStatus(1, election.Status{Phase: election.PhaseDone, Quorum: 2, Lock: &election.IntentRef{Leader: incarnation(41, 1), Number: 1},
		Intent: 1, Send: election.Send{Bootstrapping: 1, BootstrapBootID: bootID(41, 1), SendState: election.SendAnswered}, Reason: "own etcd is running and healthy"})

	for _, n := range []int{2, 3} {
		c.writeStatus(n, election.Status{Phase: election.PhaseDone, Quorum: 2, Reason: "own etcd is running and healthy"})
	}

	// Nodes from the talosconfig's context.
	code, out, errOut := c.status("--talosconfig", c.talosconfig(admin, 1, 2, 3))
	if code != statusOK {
		t.Fatalf("exit %d, want 0\n%s%s", code, out, errOut)
	}

	for _, want := range []string{
		"Verdict: BOOTSTRAPPED: etcd was bootstrapped by 127.0.41.1 (intent 1); etcd is running and healthy on all 3 nodes with a status",
		"127.0.41.2  " + c.servers[2].Node().BootTime.UTC().Format(time.RFC3339) + "  2     done",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	if n := strings.Count(out, "healthy  ok "); n != 3 {
		t.Errorf("%d rows with etcd healthy and state ok, want 3:\n%s", n, out)
	}

	t.Run("json", func(t *testing.T) {
		code, out, _ := c.status("--talosconfig", c.talosconfig(admin), "--nodes", c.nodes(1, 2, 3), "-o", "json")

		var r statusreport.Report
		if err := json.Unmarshal([]byte(out), &r); err != nil || code != statusOK {
			t.Fatalf("exit %d, %v:\n%s", code, err, out)
		}

		if r.Verdict.State != statusreport.Bootstrapped || len(r.Rows) != 3 || r.Rows[0].Phase != "done" || r.Rows[0].BootID != bootID(41, 1) {
			t.Fatalf("report %+v", r)
		}
	})
}

// bootstrapAndWaitHealthy bootstraps node first and waits until etcd is
// Running and healthy on all nodes (real time, milliseconds).
func bootstrapAndWaitHealthy(t *testing.T, c *fakeCluster, first int, all ...int) {
	t.Helper()

	bootstrapAllAndWaitHealthy(t, c, []int{first}, all...)
}

// bootstrapAllAndWaitHealthy bootstraps every node of founders (more than
// one makes separate clusters) and waits until etcd is Running and healthy
// on all nodes.
func bootstrapAllAndWaitHealthy(t *testing.T, c *fakeCluster, founders []int, all ...int) {
	t.Helper()

	id, err := c.pki.AdminIdentity(time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	dialer := transport.NewDialer(id)

	for _, f := range founders {
		n, err := dialer.Dial(t.Context(), netip.AddrPortFrom(ip(c.subnet, f), c.port))
		if err != nil {
			t.Fatal(err)
		}

		if err := n.Bootstrap(t.Context()); err != nil {
			t.Fatal(err)
		}

		n.Close() //nolint:errcheck
	}

	for _, i := range all {
		n, err := dialer.Dial(t.Context(), netip.AddrPortFrom(ip(c.subnet, i), c.port))
		if err != nil {
			t.Fatal(err)
		}

		deadline := time.Now().Add(5 * time.Second)
		for svc, err := n.EtcdService(t.Context()); err != nil || !svc.Running(); svc, err = n.EtcdService(t.Context()) {
			if time.Now().After(deadline) {
				t.Fatalf("etcd on node %d never healthy: %+v %v", i, svc, err)
			}

			time.Sleep(10 * time.Millisecond)
		}

		n.Close() //nolint:errcheck
	}
}

func TestStatusWaitingForQuorum(t *testing.T) {
	c := startCluster(t, 42, 1, 2) // node 3 is down

	for _, n := range []int{1, 2} {
		c.writeStatus(n, election.Status{Phase: election.PhaseIdle, Quorum: 3, Reason: "quorum missing: 2 of 3 control-plane nodes in view"})
	}

	code, out, errOut := c.status("--talosconfig", c.talosconfig(admin), "--nodes", c.nodes(1, 2, 3))
	if code != statusOK {
		t.Fatalf("exit %d, want 0 (progressing)\n%s%s", code, out, errOut)
	}

	for _, want := range []string{
		"Verdict: PROGRESSING: 127.0.42.1 would lead (ranked first by boot-time): quorum missing: 2 of 3 control-plane nodes in view",
		"127.0.42.3  -",
		"unreachable  dial apid 127.0.42.3:",
		"127.0.42.2: wait: quorum missing: 2 of 3",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	if strings.Contains(out, "Blocked by") {
		t.Errorf("waiting for quorum is not blocked:\n%s", out)
	}
}

func TestStatusStoodDownForOmni(t *testing.T) {
	c := startCluster(t, 51, 1, 2)
	omni := election.StandDownMessage("SiderolinkConfigs resource, apiEndpoint https://omni.example.com")

	c.writeStatus(1, election.Status{Phase: election.PhaseIdle, Quorum: 2, StandDown: omni, Reason: omni})
	c.writeStatus(2, election.Status{Phase: election.PhaseIdle, Quorum: 2})

	code, out, errOut := c.status("--talosconfig", c.talosconfig(admin), "--nodes", c.nodes(1, 2))
	if code != statusOK {
		t.Fatalf("exit %d, want 0 (Omni bootstraps)\n%s%s", code, out, errOut)
	}

	for _, want := range []string{
		"Verdict: STOOD-DOWN: 127.0.51.1 stood down: " + omni + "; no daemon of this cluster sends Bootstrap",
		"127.0.51.2 stands down on its next round: 127.0.51.1 stood down: " + omni,
		"127.0.51.2: stand-down: 127.0.51.1 stood down",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

func TestStatusBlockedByVanishedLeader(t *testing.T) {
	c := startCluster(t, 43, 2, 3) // the leader, node 1, is gone

	lock := &election.IntentRef{Leader: incarnation(43, 1), Number: 2}
	for _, n := range []int{2, 3} {
		c.writeStatus(n, election.Status{Phase: election.PhaseLocked, Quorum: 2, Lock: lock, Reason: "locked to " + lock.String()})
	}

	want := "TALOS_AUTO_BOOTSTRAP_BREAK_LOCK=127.0.43.1/" + bootID(43, 1) + "/2"

	for _, tt := range []struct{ name, nodes, where string }{
		{"leader unreachable", c.nodes(1, 2, 3), "whose leader 127.0.43.1 is unreachable"},
		{"leader not listed", c.nodes(2, 3), "whose leader 127.0.43.1 is not among the nodes asked"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := c.status("--talosconfig", c.talosconfig(admin), "--nodes", tt.nodes)
			if code != statusBlocked {
				t.Fatalf("exit %d, want 3\n%s%s", code, out, errOut)
			}

			for _, node := range []string{"127.0.43.2", "127.0.43.3"} {
				line := "  " + node + ":  " + want + "\n      only if 127.0.43.1 never ran etcd and will not come back with its disk"
				if !strings.Contains(out, line) {
					t.Errorf("output lacks %q:\n%s", line, out)
				}
			}

			if !strings.Contains(out, "Verdict: BLOCKED: 127.0.43.2 is locked to "+lock.String()+", "+tt.where) {
				t.Errorf("verdict does not say who is locked to whom:\n%s", out)
			}
		})
	}

	t.Run("through the binary", func(t *testing.T) {
		cmd := exec.Command(binary(t), "status", "--talosconfig", c.talosconfig(admin), "--nodes", c.nodes(2, 3), "--port", fmt.Sprint(c.port))
		out, err := cmd.Output()

		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != statusBlocked || !strings.Contains(string(out), want) {
			t.Fatalf("exit %v, want 3 with %s:\n%s", err, want, out)
		}
	})
}

// Two nodes bootstrapped apart: the member lists share no member id.
func TestStatusSplit(t *testing.T) {
	// Node 2 would join only after an hour: its own Bootstrap comes first.
	c := startClusterWith(t, 47, func(n int, node *fakeapid.Node) {
		if n == 2 {
			node.JoinDelay = time.Hour
		}
	}, 1, 2, 3)

	bootstrapAllAndWaitHealthy(t, c, []int{1, 2}, 1, 2, 3)

	for _, n := range []int{1, 2, 3} {
		c.writeStatus(n, election.Status{Phase: election.PhaseDone, Quorum: 2, Reason: "own etcd is running and healthy"})
	}

	code, out, errOut := c.status("--talosconfig", c.talosconfig(admin), "--nodes", c.nodes(1, 2, 3))
	if code != statusSplit {
		t.Fatalf("exit %d, want 4\n%s%s", code, out, errOut)
	}

	host := func(n int) string { return c.servers[n].Node().Hostname }
	for _, want := range []string{
		"Verdict: SPLIT: 2 separate etcd clusters, whose member lists share no member: 127.0.47.1, 127.0.47.3 (members " +
			host(1) + ", " + host(3) + "); 127.0.47.2 (members " + host(2) + ")",
		"  127.0.47.2: members " + host(2) + "\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A saved phase "done" is no proof: etcd must read healthy now. A node
// whose bootstrap died with an earlier boot is no bootstrapper.
func TestStatusBootstrappedNeedsEtcdHealthyNow(t *testing.T) {
	// Only node 3 runs etcd: nodes 1 and 2 have not joined (yet).
	c := startClusterWith(t, 48, func(n int, node *fakeapid.Node) {
		if n != 3 {
			node.JoinDelay = time.Hour
		}
	}, 1, 2, 3)

	bootstrapAndWaitHealthy(t, c, 3, 3)

	c.writeStatus(3, election.Status{Phase: election.PhaseDone, Quorum: 2, Lock: &election.IntentRef{Leader: incarnation(48, 3), Number: 1},
		Intent: 1, Send: election.Send{Bootstrapping: 1, BootstrapBootID: bootID(48, 3), SendState: election.SendAnswered}})
	// Node 1 sent Bootstrap in an earlier boot, which ended with its data
	// directory empty: withdrawn (OwnBootstrapNeverReelects).
	c.writeStatus(1, election.Status{Phase: election.PhaseDone, Quorum: 2, Intent: 1, WithdrawnThrough: 1,
		Send: election.Send{Bootstrapping: 1, BootstrapBootID: "an earlier boot"}, PastBoots: []string{"an earlier boot"}})
	c.writeStatus(2, election.Status{Phase: election.PhaseDone, Quorum: 2})

	code, out, errOut := c.status("--talosconfig", c.talosconfig(admin), "--nodes", c.nodes(1, 2, 3))
	if code != statusOK {
		t.Fatalf("exit %d, want 0 (progressing)\n%s%s", code, out, errOut)
	}

	want := "Verdict: PROGRESSING: etcd was bootstrapped by 127.0.48.3 (intent 1); waiting for 127.0.48.1 (etcd none now, " +
		"although its status says done), 127.0.48.2 (etcd none now, although its status says done) to be healthy"
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}
}

// A leader that bootstrapped reboots onto another address (DHCP); apid
// answers there before /var is mounted.
func TestStatusLeaderBackAtAnotherAddress(t *testing.T) {
	c := startClusterWith(t, 49, func(n int, node *fakeapid.Node) {
		// Its data directory lists only once /var is mounted: no member
		// list before (Talos answers at once, not at the deadline).
		node.EtcdMemberListError = status.Error(codes.Unavailable, "connection error: dial tcp 127.0.0.1:2379: connect: connection refused")
	}, 2, 3, 9)

	lock := &election.IntentRef{Leader: incarnation(49, 1), Number: 1}
	for _, n := range []int{2, 3} {
		c.writeStatus(n, election.Status{Phase: election.PhaseLocked, Quorum: 3, Lock: lock,
			Reason: "127.0.49.1 is bootstrapping intent 1 (phase bootstrapped): locked to " + lock.String() + ": waiting for own etcd to join"})
	}

	dataDir := filepath.Join(c.servers[9].FilesRoot(), transport.EtcdDataDir)
	if err := os.RemoveAll(dataDir); err != nil {
		t.Fatal(err)
	}

	code, out, errOut := c.status("--talosconfig", c.talosconfig(admin), "--nodes", c.nodes(1, 2, 3, 9))
	if code != statusBlocked {
		t.Fatalf("/var not mounted: exit %d, want 3\n%s%s", code, out, errOut)
	}

	for _, want := range []string{
		"Verdict: BLOCKED: 127.0.49.1 was last seen in phase bootstrapped of intent 1 (in 127.0.49.2's status): it may have founded etcd. ",
		"[leader-unidentified] 127.0.49.3 is locked to " + lock.String() + ", whose leader is out of sight; 127.0.49.9 (no status file) " +
			"answers without a status of its current boot and may be that leader after a reboot",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("/var not mounted: output lacks %q:\n%s", want, out)
		}
	}

	for _, never := range []string{"BREAK_LOCK=", "[no-extension]"} {
		if strings.Contains(out, never) {
			t.Errorf("/var not mounted: output has %q:\n%s", never, out)
		}
	}

	// /var is mounted (with the etcd data its Bootstrap wrote) and its
	// daemon publishes a status of the new boot that lists the locked one.
	if err := os.MkdirAll(filepath.Join(dataDir, "member"), 0o700); err != nil {
		t.Fatal(err)
	}

	c.writeStatus(9, election.Status{
		Incarnation: election.Incarnation{IP: ip(49, 9), BootID: bootID(49, 9), Node: bootID(49, 1)}, PastBoots: []string{bootID(49, 1)},
		Phase: election.PhaseBootstrapped, Quorum: 3, Lock: lock, Intent: 1,
		Send: election.Send{Bootstrapping: 1, BootstrapBootID: bootID(49, 1), SendState: election.SendAnswered},
	})

	code, out, errOut = c.status("--talosconfig", c.talosconfig(admin), "--nodes", c.nodes(1, 2, 3, 9))
	if code != statusOK || !strings.Contains(out, "Verdict: PROGRESSING: etcd was bootstrapped by 127.0.49.9 (intent 1); waiting for") {
		t.Fatalf("status of the new boot: exit %d, want 0, progressing with the leader at 127.0.49.9\n%s%s", code, out, errOut)
	}

	for _, never := range []string{"BREAK_LOCK=", "Blocked by", "no status file"} {
		if strings.Contains(out, never) {
			t.Errorf("status of the new boot: output has %q:\n%s", never, out)
		}
	}
}

// A bootstrapping leader whose address changed within its boot: its own
// lock names the old address, so ConfirmLocks fails every round.
func TestStatusLeaderMovedWithinItsBoot(t *testing.T) {
	c := startClusterWith(t, 50, func(n int, node *fakeapid.Node) {
		if n == 9 {
			node.BootID = bootID(50, 1) // node 1's boot, at a new address
		}
	}, 2, 3, 9)

	lock := &election.IntentRef{Leader: incarnation(50, 1), Number: 1}
	for _, n := range []int{2, 3} {
		c.writeStatus(n, election.Status{Phase: election.PhaseLocked, Quorum: 3, Lock: lock})
	}

	c.writeStatus(9, election.Status{
		Incarnation: election.Incarnation{IP: ip(50, 9), BootID: bootID(50, 1), Node: bootID(50, 1)},
		Phase:       election.PhaseBootstrapping, Quorum: 3, Lock: lock, Intent: 1,
		Send: election.Send{Bootstrapping: 1, BootstrapBootID: bootID(50, 1), SendState: election.SendMayHaveArrived, BootstrapAt: time.Now().Add(-10 * time.Minute)},
	})

	code, out, errOut := c.status("--talosconfig", c.talosconfig(admin), "--nodes", c.nodes(2, 3, 9))
	if code != statusBlocked {
		t.Fatalf("exit %d, want 3\n%s%s", code, out, errOut)
	}

	want := "Verdict: BLOCKED: 127.0.50.9 is bootstrapping intent 1 but never sends Bootstrap while its last check fails: " +
		"own lock " + lock.String() + " does not hold live intent 1; its address changed from 127.0.50.1 within its boot, so its own lock " +
		"no longer names it: reboot it"
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}

	if strings.Contains(out, "PROGRESSING") || strings.Contains(out, "bootstrapped by") {
		t.Errorf("a leader that cannot send is no progress:\n%s", out)
	}
}

func TestStatusQuorumMismatch(t *testing.T) {
	c := startCluster(t, 44, 1, 2, 3)

	c.writeStatus(1, election.Status{Phase: election.PhaseIdle, Quorum: 3})
	c.writeStatus(2, election.Status{Phase: election.PhaseIdle, Quorum: 2})
	c.writeStatus(3, election.Status{Phase: election.PhaseIdle, Quorum: 3})

	code, out, errOut := c.status("--talosconfig", c.talosconfig(admin), "--nodes", c.nodes(1, 2, 3))
	if code != statusBlocked {
		t.Fatalf("exit %d, want 3\n%s%s", code, out, errOut)
	}

	want := "[quorum-mismatch] TALOS_AUTO_BOOTSTRAP_QUORUM_NODES differs: 127.0.44.2 has 2; 127.0.44.1, 127.0.44.3 have 3"
	if !strings.Contains(out, want) {
		t.Errorf("output lacks %q:\n%s", want, out)
	}

	if strings.Contains(out, "BREAK_LOCK") {
		t.Errorf("no lock to break in a mismatch:\n%s", out)
	}
}

func TestStatusReaderCredentials(t *testing.T) {
	c := startCluster(t, 45, 1, 2)
	c.writeStatus(1, election.Status{Phase: election.PhaseIdle, Quorum: 2})

	t.Run("talosconfig", func(t *testing.T) {
		code, out, errOut := c.status("--talosconfig", c.talosconfig(role.MakeSet(role.Reader)), "--nodes", c.nodes(1, 2))

		want := "the talosconfig's certificate has role os:reader; reading status files needs os:admin"
		if code != statusError || !strings.Contains(errOut, want) || out != "" {
			t.Fatalf("exit %d, want 1 with %q\nstdout:\n%s\nstderr:\n%s", code, want, out, errOut)
		}
	})

	// A certificate that passes the talosconfig checks is admin; the
	// answer of apid itself is checked on a reader identity.
	t.Run("apid refuses Read", func(t *testing.T) {
		id, err := c.pki.ReaderIdentity(time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}

		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()

		_, err = collect(ctx, transport.NewDialer(id), []netip.Addr{ip(45, 1), ip(45, 2)}, c.port)
		if !errors.Is(err, errReadDenied) || rolesOf(id) != "os:reader" {
			t.Fatalf("collect = %v (roles %s), want errReadDenied from os:reader", err, rolesOf(id))
		}

		id, err = c.pki.AdminIdentity(time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}

		facts, err := collect(ctx, transport.NewDialer(id), []netip.Addr{ip(45, 1), ip(45, 2)}, c.port)
		if err != nil || facts[0].StatusState != election.StatusOK || facts[1].StatusState != election.StatusMissing {
			t.Fatalf("admin: %+v, %v", facts, err)
		}
	})
}

func TestStatusForeignNode(t *testing.T) {
	c := startCluster(t, 46, 1)
	c.writeStatus(1, election.Status{Phase: election.PhaseIdle, Quorum: 1})

	other, err := fakeapid.NewPKI()
	if err != nil {
		t.Fatal(err)
	}

	srv, err := fakeapid.Start(fakeapid.Config{PKI: other, Listen: []string{netip.AddrPortFrom(ip(46, 2), c.port).String()}},
		fakeapid.Node{IP: ip(46, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close() //nolint:errcheck

	code, out, errOut := c.status("--talosconfig", c.talosconfig(admin), "--nodes", c.nodes(1, 2), "-o", "json")

	var r statusreport.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("exit %d: %v\n%s%s", code, err, out, errOut)
	}

	if r.Rows[1].State != statusreport.StateForeign || r.Rows[0].State != statusreport.StateOK {
		t.Fatalf("rows %+v, want ok and foreign", r.Rows)
	}
}

func TestParseNodes(t *testing.T) {
	got, err := parseNodes([]string{" 10.0.0.5", "10.0.0.6:50000", "[fd00::1]:50000", "10.0.0.5", ""})
	if err != nil || fmt.Sprint(got) != "[10.0.0.5 10.0.0.6 fd00::1]" {
		t.Fatalf("parseNodes = %v, %v", got, err)
	}

	if _, err := parseNodes([]string{"cp.example.com"}); err == nil || !strings.Contains(err.Error(), "not an IP address") {
		t.Fatalf("hostname: %v", err)
	}

	if _, err := parseNodes(nil); err == nil {
		t.Fatal("no nodes accepted")
	}
}

func TestTalosconfigPath(t *testing.T) {
	env := map[string]string{"TALOSCONFIG": "/env/talosconfig", "HOME": "/home/op"}
	getenv := func(k string) string { return env[k] }

	for _, tt := range []struct{ flag, want string }{{"./tc", "./tc"}, {"", "/env/talosconfig"}} {
		if got, _ := talosconfigPath(tt.flag, getenv); got != tt.want {
			t.Errorf("talosconfigPath(%q) = %q, want %q", tt.flag, got, tt.want)
		}
	}

	delete(env, "TALOSCONFIG")

	if got, _ := talosconfigPath("", getenv); got != "/home/op/.talos/config" {
		t.Errorf("without TALOSCONFIG: %q", got)
	}
}
