package e2e

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/config"
	"github.com/siderolabs/talos/pkg/machinery/config/generate"
	"github.com/siderolabs/talos/pkg/machinery/config/generate/secrets"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"
	"github.com/siderolabs/talos/pkg/machinery/constants"
	"golang.org/x/sys/unix"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

// tools are the host commands the harness runs.
var tools = []string{"ip", "mkfs.xfs", "losetup", "unshare", "mount", "umount", "chroot", "mknod", "env", "sh", "sleep"}

// requireRoot skips without root or a needed tool, except under CI=true,
// where a skipped e2e would hide a failure. It returns the tools' paths.
func requireRoot(t *testing.T) map[string]string {
	t.Helper()

	fail := t.Skipf
	if os.Getenv("CI") == "true" {
		fail = t.Fatalf
	}

	if os.Geteuid() != 0 {
		fail("e2e needs root (network namespaces, loop devices, mounts): skipped; under CI=true this is a failure")
	}

	paths := map[string]string{}

	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if err != nil {
			fail("e2e needs %s (apt-get install -y iproute2 xfsprogs mount util-linux coreutils): %v", tool, err)
		}

		paths[tool] = p
	}

	return paths
}

// artifacts are the binaries under test, built once per run.
type artifacts struct {
	daemon   string
	fakeapid string
	tools    map[string]string
}

func repoRoot(t *testing.T) string {
	t.Helper()

	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		t.Fatalf("find the module root with `go env GOMOD`: %v (%q)", err, out)
	}

	return filepath.Dir(strings.TrimSpace(string(out)))
}

// build runs `make build` (the shipped static binary) and builds cmd/fakeapid;
// both are copied into dir so that a parallel `make build` cannot swap the
// binary under a running scenario.
func build(t *testing.T, dir string, tools map[string]string) artifacts {
	t.Helper()

	root := repoRoot(t)

	mk := exec.Command("make", "build", "GOARCH="+runtime.GOARCH)
	mk.Dir = root

	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}

	daemon := filepath.Join(dir, "kommodity-autobootstrap-extension")
	copyFile(t, filepath.Join(root, "_out", "kommodity-autobootstrap-extension"), daemon, 0o755)

	fake := filepath.Join(dir, "fakeapid")
	gb := exec.Command("go", "build", "-o", fake, "./cmd/fakeapid")
	gb.Dir = root

	if out, err := gb.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/fakeapid: %v\n%s", err, out)
	}

	return artifacts{daemon: daemon, fakeapid: fake, tools: tools}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()

	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatalf("copy %s: %v", from, err)
	}

	if err := os.WriteFile(to, data, mode); err != nil {
		t.Fatalf("copy to %s: %v", to, err)
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()

	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}

	return hex.EncodeToString(b)
}

func randomUUID(t *testing.T) string {
	t.Helper()

	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}

	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80

	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// cluster is one Talos cluster's secrets: its OS CA (served by the fake
// apids, found by the daemon in config.yaml) and its generated configs.
type cluster struct {
	name         string
	pki          *fakeapid.PKI
	caCert       string
	caKey        string
	controlPlane []byte
	worker       []byte
}

func newCluster(t *testing.T, dir, name string) *cluster {
	t.Helper()

	bundle, err := secrets.NewBundle(secrets.NewClock(), config.TalosVersionCurrent)
	if err != nil {
		t.Fatalf("secrets bundle: %v", err)
	}

	in, err := generate.NewInput(name, "https://198.18.0.10:6443", constants.DefaultKubernetesVersion,
		generate.WithSecretsBundle(bundle))
	if err != nil {
		t.Fatalf("generate input: %v", err)
	}

	c := &cluster{
		name:   name,
		caCert: filepath.Join(dir, name+"-ca.crt"),
		caKey:  filepath.Join(dir, name+"-ca.key"),
	}

	for typ, dst := range map[machine.Type]*[]byte{machine.TypeControlPlane: &c.controlPlane, machine.TypeWorker: &c.worker} {
		cfg, err := in.Config(typ)
		if err != nil {
			t.Fatalf("generate %s config: %v", typ, err)
		}

		if *dst, err = cfg.Bytes(); err != nil {
			t.Fatalf("encode %s config: %v", typ, err)
		}
	}

	if err := os.WriteFile(c.caCert, bundle.Certs.OS.Crt, 0o600); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(c.caKey, bundle.Certs.OS.Key, 0o600); err != nil {
		t.Fatal(err)
	}

	if c.pki, err = fakeapid.PKIFromCA(bundle.Certs.OS); err != nil {
		t.Fatalf("PKI from the bundle's OS CA: %v", err)
	}

	return c
}

// proc is a process the harness started, in a process group of its own.
type proc struct {
	name    string
	cmd     *exec.Cmd
	stdout  string
	stderr  string
	started time.Time

	done     chan struct{}
	ended    time.Time
	exitCode int
	peakKB   atomic.Int64 // VmHWM, polled while it runs
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill SIGKILLs the process group; the group is ours (Setpgid).
func (p *proc) kill() {
	if p.exited() {
		return
	}

	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// pollPeak keeps the largest VmHWM of the process (the daemon, once the
// exec chain ip→unshare→sh→env→chroot reached it; the high-water mark
// restarts with every exec) until it ends.
func (p *proc) pollPeak() {
	path := fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid)
	tick := time.NewTicker(20 * time.Millisecond)

	defer tick.Stop()

	for {
		if data, err := os.ReadFile(path); err == nil {
			if kb := vmHWM(data); kb > 0 && bytes.Contains(data, []byte("Name:\tkommodity-autob")) {
				p.peakKB.Store(kb)
			}
		}

		select {
		case <-p.done:
			return
		case <-tick.C:
		}
	}
}

func vmHWM(status []byte) int64 {
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)

			return kb
		}
	}

	return 0
}

// topology is one scenario's world: a bridge namespace, node namespaces,
// their processes, loop devices and files. teardown removes exactly these.
type topology struct {
	t        *testing.T
	art      artifacts
	tag      string
	dir      string
	bridgeNS string
	registry string

	mu       sync.Mutex
	segments map[segment]bool
	procs    []*proc
	loops    []string
	netns    []string
	nodes    []*node
	nextIdx  int
	teardown sync.Once
}

// newTopology creates the bridge namespace (198.18.0.1/24 on br0, no
// forwarding: nothing is reachable beyond the segment). Teardown is
// registered with t.Cleanup; callers also defer tp.close().
func newTopology(t *testing.T, art artifacts) *topology {
	t.Helper()

	tp := &topology{t: t, art: art, tag: "kab" + randomHex(t, 3), dir: t.TempDir(), segments: map[segment]bool{0: true}}
	tp.registry = filepath.Join(tp.dir, "registry")
	t.Cleanup(tp.close)

	tp.bridgeNS = tp.addNetns("br")
	tp.ip("-n", tp.bridgeNS, "link", "add", "br0", "type", "bridge")
	tp.ip("-n", tp.bridgeNS, "addr", "add", "198.18.0.1/24", "dev", "br0")
	tp.ip("-n", tp.bridgeNS, "link", "set", "br0", "up")

	return tp
}

// segment is a network a node's eth0 sits on, each its own bridge in the
// bridge namespace: 0 is 198.18.0.0/24 (br0), 1 and up are further IPv4
// subnets 198.18.<n>.0/24, and segmentIPv6 is an IPv6-only segment in a
// ULA prefix. The bridge namespace routes between its segments, the
// router of a control plane spread over subnets; nothing leaves it.
type segment int

const segmentIPv6 segment = -1

// ula is the IPv6-only segment's prefix (inside the namespaces only).
const ula = "fd00:198:18::"

func (sg segment) gateway() string {
	if sg == segmentIPv6 {
		return ula + "1"
	}

	return fmt.Sprintf("198.18.%d.1", sg)
}

func (sg segment) bridge() string {
	if sg == segmentIPv6 {
		return "br6"
	}

	return fmt.Sprintf("br%d", sg)
}

// hostAddr is the idx-th node's address on the segment.
func (sg segment) hostAddr(idx int) netip.Addr {
	if sg == segmentIPv6 {
		return netip.MustParseAddr(fmt.Sprintf("%s%x", ula, 10+idx))
	}

	return netip.AddrFrom4([4]byte{198, 18, byte(sg), byte(10 + idx)})
}

func (sg segment) bits() int {
	if sg == segmentIPv6 {
		return 64
	}

	return 24
}

// addSegment creates the segment's bridge and turns on routing between the
// segments.
func (tp *topology) addSegment(sg segment) {
	tp.t.Helper()

	tp.mu.Lock()
	exists := tp.segments[sg]
	tp.segments[sg] = true
	tp.mu.Unlock()

	if exists {
		return
	}

	br := sg.bridge()
	tp.ip("-n", tp.bridgeNS, "link", "add", br, "type", "bridge")

	args := []string{"-n", tp.bridgeNS}
	if sg == segmentIPv6 {
		args = append(args, "-6")
	}

	tp.ip(append(args, "addr", "add", fmt.Sprintf("%s/%d", sg.gateway(), sg.bits()), "dev", br, "nodad")...)
	tp.ip("-n", tp.bridgeNS, "link", "set", br, "up")

	// /proc/sys/net is the namespace's own: forwarding stays inside.
	for _, knob := range []string{"ipv4/ip_forward", "ipv6/conf/all/forwarding"} {
		if out, err := exec.Command(tp.art.tools["ip"], "netns", "exec", tp.bridgeNS, tp.art.tools["sh"], "-c",
			"echo 1 > /proc/sys/net/"+knob).CombinedOutput(); err != nil {
			tp.t.Fatalf("enable %s in %s: %v\n%s", knob, tp.bridgeNS, err, out)
		}
	}
}

func (tp *topology) ip(args ...string) {
	tp.t.Helper()

	if out, err := exec.Command(tp.art.tools["ip"], args...).CombinedOutput(); err != nil {
		tp.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (tp *topology) addNetns(suffix string) string {
	tp.t.Helper()

	name := tp.tag + "-" + suffix
	tp.ip("netns", "add", name)

	tp.mu.Lock()
	tp.netns = append(tp.netns, name)
	tp.mu.Unlock()

	tp.ip("-n", name, "link", "set", "lo", "up")

	return name
}

// close kills the processes it started (by process group), detaches its loop
// devices and deletes its namespaces; t.TempDir removes the files.
func (tp *topology) close() {
	tp.teardown.Do(func() {
		tp.mu.Lock()
		procs, loops, netns := tp.procs, tp.loops, tp.netns
		tp.mu.Unlock()

		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].kill()
		}

		for _, dev := range loops {
			if out, err := exec.Command(tp.art.tools["losetup"], "--detach", dev).CombinedOutput(); err != nil {
				tp.t.Errorf("teardown: losetup --detach %s: %v: %s", dev, err, out)
			}
		}

		for i := len(netns) - 1; i >= 0; i-- {
			if out, err := exec.Command(tp.art.tools["ip"], "netns", "del", netns[i]).CombinedOutput(); err != nil {
				tp.t.Errorf("teardown: ip netns del %s: %v: %s", netns[i], err, out)
			}
		}
	})
}

// start runs a command in a process group of its own with stdout and stderr
// in files; the parent-death signal reaps it if the test binary dies.
func (tp *topology) start(name, stdout string, args ...string) *proc {
	tp.t.Helper()

	out, err := os.OpenFile(stdout, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		tp.t.Fatal(err)
	}
	defer out.Close() //nolint:errcheck

	errPath := strings.TrimSuffix(stdout, ".log") + ".stderr"

	errf, err := os.OpenFile(errPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		tp.t.Fatal(err)
	}
	defer errf.Close() //nolint:errcheck

	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout = out
	cmd.Stderr = errf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	p := &proc{name: name, cmd: cmd, stdout: stdout, stderr: errPath, done: make(chan struct{})}

	if err := cmd.Start(); err != nil {
		tp.t.Fatalf("start %s: %v", name, err)
	}

	p.started = time.Now()

	tp.mu.Lock()
	tp.procs = append(tp.procs, p)
	tp.mu.Unlock()

	go func() {
		err := cmd.Wait()
		p.ended = time.Now()
		p.exitCode = cmd.ProcessState.ExitCode()

		if err != nil && p.exitCode == 0 {
			p.exitCode = -1
		}

		close(p.done)
	}()

	return p
}

// nodeSpec says what a node is.
type nodeSpec struct {
	name     string
	cluster  *cluster
	worker   bool
	bootTime time.Time
	// holdState mounts STATE read-write in a mount namespace of its own for
	// the node's lifetime, as Talos v1.6–v1.9 and v1.12+ hold it, so that
	// the daemon's read-only mount meets EBUSY and must share the superblock.
	holdState bool
	fakeArgs  []string
	// segment is the network of the node's eth0 (default 198.18.0.0/24).
	segment segment
	// lostReplies: how many first Bootstrap calls fakeArgs make lost-reply.
	lostReplies int
}

// node is one simulated Talos machine.
type node struct {
	tp     *topology
	spec   nodeSpec
	ip     netip.Addr
	ns     string
	dir    string
	host   string // the fake apid's files root: the node's host filesystem
	bootID string
	loop   string
	apid   *proc
	runs   []*proc
}

// addNode creates the node's namespace and veth to the bridge, its STATE
// partition and directories; processes start separately.
func (tp *topology) addNode(spec nodeSpec) *node {
	tp.t.Helper()

	tp.mu.Lock()
	tp.nextIdx++
	idx := tp.nextIdx
	tp.mu.Unlock()

	tp.addSegment(spec.segment)

	n := &node{
		tp:     tp,
		spec:   spec,
		ip:     spec.segment.hostAddr(idx),
		dir:    filepath.Join(tp.dir, spec.name),
		bootID: randomUUID(tp.t),
	}
	n.host = filepath.Join(n.dir, "host")
	n.ns = tp.addNetns(spec.name)

	family := "-4"
	if spec.segment == segmentIPv6 {
		family = "-6"
	}

	veth := fmt.Sprintf("v%d", idx)
	tp.ip("-n", tp.bridgeNS, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", n.ns)
	tp.ip("-n", tp.bridgeNS, "link", "set", veth, "master", spec.segment.bridge())
	tp.ip("-n", tp.bridgeNS, "link", "set", veth, "up")
	// nodad: the address is usable at once, not tentative for a second.
	tp.ip("-n", n.ns, family, "addr", "add", fmt.Sprintf("%s/%d", n.ip, spec.segment.bits()), "dev", "eth0", "nodad")
	tp.ip("-n", n.ns, "link", "set", "eth0", "up")
	tp.ip("-n", n.ns, family, "route", "add", "default", "via", spec.segment.gateway(), "dev", "eth0")

	for _, d := range []string{
		"host/var/lib/kommodity-autobootstrap", "secrets", "run", "mnt", "hold",
		// The container's rootfs: mount points only, and the binary.
		"rootfs/system/secrets", "rootfs/host/proc", "rootfs/proc", "rootfs/dev",
		"rootfs/run", "rootfs/var/lib/kommodity-autobootstrap",
	} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o755); err != nil {
			tp.t.Fatal(err)
		}
	}

	if !spec.worker {
		if err := os.Mkdir(filepath.Join(n.dir, "secrets", "etcd"), 0o700); err != nil {
			tp.t.Fatal(err)
		}
	}

	if err := os.WriteFile(filepath.Join(n.dir, "rootfs", "kommodity-autobootstrap-extension"), nil, 0o755); err != nil {
		tp.t.Fatal(err)
	}

	n.makeState()

	tp.mu.Lock()
	tp.nodes = append(tp.nodes, n)
	tp.mu.Unlock()

	return n
}

// stateImageSize: mkfs.xfs refuses filesystems below 300 MiB; sparse.
const stateImageSize = 300 << 20

// makeState makes the node's STATE partition: its own XFS (own UUID) on a
// loop device, labelled STATE, holding the generated machine config. The
// config is written in a private mount namespace, so no mount ever appears
// in the root namespace.
func (n *node) makeState() {
	t := n.tp.t
	t.Helper()

	img := filepath.Join(n.dir, "state.img")

	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	if err := os.Truncate(img, stateImageSize); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(n.tp.art.tools["losetup"], "--find", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup --find --show %s: %v", img, err)
	}

	n.loop = strings.TrimSpace(string(out))

	n.tp.mu.Lock()
	n.tp.loops = append(n.tp.loops, n.loop)
	n.tp.mu.Unlock()

	if out, err := exec.Command(n.tp.art.tools["mkfs.xfs"], "-q", "-L", "STATE", n.loop).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs %s: %v\n%s", n.loop, err, out)
	}

	cfg := n.spec.cluster.controlPlane
	if n.spec.worker {
		cfg = n.spec.cluster.worker
	}

	src := filepath.Join(n.dir, "config.yaml")
	if err := os.WriteFile(src, cfg, 0o600); err != nil {
		t.Fatal(err)
	}

	mnt := filepath.Join(n.dir, "mnt")
	script := fmt.Sprintf("mount -t xfs %s %s && cp %s %s/config.yaml && umount %s", n.loop, mnt, src, mnt, mnt)

	if out, err := exec.Command(n.tp.art.tools["unshare"], "--mount", "--propagation", "private",
		n.tp.art.tools["sh"], "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("write config.yaml to %s: %v\n%s", n.loop, err, out)
	}
}

// startAPID starts the node's fake apid in its namespace and waits until it
// listens; if spec.holdState, the read-write holder of STATE starts first.
func (n *node) startAPID() {
	t := n.tp.t
	t.Helper()

	if n.spec.holdState {
		hold := filepath.Join(n.dir, "hold")
		holder := n.tp.start(n.spec.name+" STATE holder", filepath.Join(n.dir, "holder.log"),
			n.tp.art.tools["unshare"], "--mount", "--propagation", "private", n.tp.art.tools["sh"], "-c",
			fmt.Sprintf("mount -t xfs %s %s && echo held && exec %s 86400", n.loop, hold, n.tp.art.tools["sleep"]))
		waitForLine(t, holder, "held", 10*time.Second)
		n.expectReadOnlyMountBusy()
	}

	machineType := "controlplane"
	if n.spec.worker {
		machineType = "worker"
	}

	args := []string{
		n.tp.art.tools["ip"], "netns", "exec", n.ns, n.tp.art.fakeapid,
		"--listen", netip.AddrPortFrom(n.ip, 50000).String() + ",127.0.0.1:50000",
		"--ip", n.ip.String(),
		"--ca-cert", n.spec.cluster.caCert, "--ca-key", n.spec.cluster.caKey,
		"--machine-type", machineType,
		"--boot-time", strconv.FormatInt(n.spec.bootTime.Unix(), 10),
		"--boot-id", n.bootID,
		"--files-root", n.host,
		"--registry-dir", n.tp.registry,
		"--data-fill-delay", "1s", "--healthy-delay", "1s", "--join-delay", "2s",
	}
	args = append(args, n.spec.fakeArgs...)

	n.apid = n.tp.start(n.spec.name+" apid", filepath.Join(n.dir, "apid.log"), args...)
	waitForLine(t, n.apid, `"message":"listening"`, 15*time.Second)
}

// expectReadOnlyMountBusy proves that the holder makes the daemon's plain
// read-only mount fail with EBUSY, so that the daemon reaching the Connect
// state shows its shared-superblock fallback works on this kernel.
func (n *node) expectReadOnlyMountBusy() {
	t := n.tp.t
	t.Helper()

	mnt := filepath.Join(n.dir, "mnt")
	out, err := exec.Command(n.tp.art.tools["unshare"], "--mount", "--propagation", "private",
		n.tp.art.tools["mount"], "-t", "xfs", "-o", "ro", n.loop, mnt).CombinedOutput()

	if err == nil || !strings.Contains(strings.ToLower(string(out)), "busy") {
		t.Fatalf("%s: a read-only mount of %s while the holder has it read-write: err %v, output %q; want EBUSY",
			n.spec.name, n.loop, err, out)
	}
}

// waitForLine waits until p's stdout holds a line containing want.
func waitForLine(t *testing.T, p *proc, want string, timeout time.Duration) {
	t.Helper()

	deadline := time.Now().Add(timeout)

	for time.Now().Before(deadline) {
		if data, _ := os.ReadFile(p.stdout); bytes.Contains(data, []byte(want)) {
			return
		}

		if p.exited() {
			break
		}

		time.Sleep(20 * time.Millisecond)
	}

	stderr, _ := os.ReadFile(p.stderr)
	stdout, _ := os.ReadFile(p.stdout)
	t.Fatalf("%s: no %q within %s (exited: %v, code %d)\nstdout:\n%s\nstderr:\n%s",
		p.name, want, timeout, p.exited(), p.exitCode, stdout, stderr)
}

// daemonEnv is what an ExtensionServiceConfig would pass, with short
// intervals; callers override single values.
func daemonEnv(quorum int, overrides ...string) []string {
	env := map[string]string{
		"LOG_LEVEL":                                    "info",
		"TALOS_AUTO_BOOTSTRAP_QUORUM_NODES":            strconv.Itoa(quorum),
		"TALOS_AUTO_BOOTSTRAP_PRE_BOOTSTRAP_DELAY":     "2s",
		"TALOS_AUTO_BOOTSTRAP_FOLLOWER_CHECK_INTERVAL": "1s",
		"TALOS_AUTO_BOOTSTRAP_SCAN_INTERVAL":           "3s",
		"TALOS_AUTO_BOOTSTRAP_SCAN_TIMEOUT":            "1s",
		"TALOS_AUTO_BOOTSTRAP_MAX_BACKOFF":             "3s",
		"TALOS_AUTO_BOOTSTRAP_DETECT_GRACE":            "2s",
		// The scenarios name the oldest node as the bootstrapper; the
		// shipped default (address) runs where an override unsets this.
		"TALOS_AUTO_BOOTSTRAP_LEADER_ORDER": "boot-time",
	}
	order := []string{}

	for k := range env {
		order = append(order, k)
	}

	for _, kv := range overrides {
		k, v, _ := strings.Cut(kv, "=")
		if _, ok := env[k]; !ok {
			order = append(order, k)
		}

		env[k] = v
	}

	out := make([]string, 0, len(order))
	for _, k := range order {
		if env[k] == "" {
			continue // "NAME=" unsets: the daemon's default applies
		}

		out = append(out, k+"="+env[k])
	}

	return out
}

// daemonScript sets up the container as Talos's spec
// (deploy/kommodity-autobootstrap.yaml) describes it, inside the mount
// namespace that `unshare --mount --propagation private` made: a read-only
// rootfs holding the binary, /system/secrets (ro), the host's /proc at
// /host/proc (ro), a /dev (ro) whose
// /dev/disk/by-partlabel/STATE links to the node's loop device,
// /run/kommodity-autobootstrap (rw, private) and
// /var/lib/kommodity-autobootstrap (rw). Then it execs the daemon chrooted
// there with only the environment given as arguments.
const daemonScript = `set -eu
R=$ROOTFS
ro() { mount --bind "$1" "$2"; mount -o remount,bind,ro "$2"; }
mount --bind "$R" "$R"
mount --bind /proc "$R/proc"
ro /proc "$R/host/proc"
ro "$SECRETS" "$R/system/secrets"
mount -t tmpfs -o mode=0755 dev "$R/dev"
mknod -m 666 "$R/dev/null" c 1 3
mknod -m 666 "$R/dev/zero" c 1 5
mknod -m 666 "$R/dev/random" c 1 8
mknod -m 666 "$R/dev/urandom" c 1 9
mknod -m 660 "$R/dev/$LOOPNAME" b "$LOOPMAJ" "$LOOPMIN"
mkdir -p "$R/dev/disk/by-partlabel"
ln -s "../../$LOOPNAME" "$R/dev/disk/by-partlabel/STATE"
mount -o remount,bind,ro "$R/dev"
mount --bind "$RUNDIR" "$R/run"
mount --bind "$STATUSDIR" "$R/var/lib/kommodity-autobootstrap"
mount --bind "$BINARY" "$R/kommodity-autobootstrap-extension"
mount -o remount,bind,ro "$R"
exec "$ENV" -i "$@" "$CHROOT" "$R" /kommodity-autobootstrap-extension
`

// startDaemon runs the shipped binary for this node as Talos runs the
// extension service: in the node's network namespace and a private mount
// namespace, chrooted into its rootfs. env is the whole environment.
func (n *node) startDaemon(env []string) *proc {
	t := n.tp.t
	t.Helper()

	var st unix.Stat_t
	if err := unix.Stat(n.loop, &st); err != nil {
		t.Fatalf("stat %s: %v", n.loop, err)
	}

	run := len(n.runs) + 1
	vars := map[string]string{
		"ROOTFS":    filepath.Join(n.dir, "rootfs"),
		"SECRETS":   filepath.Join(n.dir, "secrets"),
		"LOOPNAME":  filepath.Base(n.loop),
		"LOOPMAJ":   strconv.FormatUint(uint64(unix.Major(st.Rdev)), 10),
		"LOOPMIN":   strconv.FormatUint(uint64(unix.Minor(st.Rdev)), 10),
		"RUNDIR":    filepath.Join(n.dir, "run"),
		"STATUSDIR": filepath.Join(n.host, "var", "lib", "kommodity-autobootstrap"),
		"BINARY":    n.tp.art.daemon,
		"ENV":       n.tp.art.tools["env"],
		"CHROOT":    n.tp.art.tools["chroot"],
	}

	var script strings.Builder
	for k, v := range vars {
		fmt.Fprintf(&script, "%s=%s\n", k, shellQuote(v))
	}

	script.WriteString(daemonScript)

	path := filepath.Join(n.dir, fmt.Sprintf("daemon-%d.sh", run))
	if err := os.WriteFile(path, []byte(script.String()), 0o700); err != nil {
		t.Fatal(err)
	}

	args := append([]string{
		n.tp.art.tools["ip"], "netns", "exec", n.ns,
		n.tp.art.tools["unshare"], "--mount", "--propagation", "private",
		n.tp.art.tools["sh"], path,
	}, env...)

	p := n.tp.start(fmt.Sprintf("%s daemon#%d", n.spec.name, run), filepath.Join(n.dir, fmt.Sprintf("daemon-%d.log", run)), args...)
	go p.pollPeak()

	n.runs = append(n.runs, p)

	return p
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// logLine is one JSON line of a daemon's or fake apid's stdout.
type logLine map[string]any

// msg is the line's message: the daemon logs it as "msg" (the upstream README's
// format), the fake apid as zerolog's default "message".
func (l logLine) msg() string {
	if m := l.str("msg"); m != "" {
		return m
	}

	return l.str("message")
}

func (l logLine) str(k string) string {
	s, _ := l[k].(string)

	return s
}

func (l logLine) num(k string) float64 {
	f, _ := l[k].(float64)

	return f
}

func readLog(t *testing.T, path string) []logLine {
	t.Helper()

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}

	var lines []logLine

	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)

	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) == nil {
			lines = append(lines, l)
		}
	}

	return lines
}

// bootstrapCalls lists the Bootstrap calls the node's fake apid served
// (every answer code).
func (n *node) bootstrapCalls() []logLine {
	var calls []logLine

	for _, l := range readLog(n.tp.t, n.apid.stdout) {
		if l.msg() == "call" && strings.HasSuffix(l.str("method"), "/Bootstrap") {
			calls = append(calls, l)
		}
	}

	return calls
}

// acceptedBootstraps counts the Bootstrap calls the node's apid accepted:
// answered OK, or among the first lostReplies calls (the lost-reply fault
// accepts the bootstrap, then holds the answer until the caller gives up).
func (n *node) acceptedBootstraps() int {
	ok := 0

	for i, c := range n.bootstrapCalls() {
		switch code := c.str("code"); {
		case code == "OK":
			ok++
		case i < n.spec.lostReplies && (code == "Canceled" || code == "DeadlineExceeded"):
			ok++
		}
	}

	return ok
}

// clusters reads the shared etcd registry of the fake apids.
func (tp *topology) clusters() []fakeapid.Cluster {
	tp.t.Helper()

	reg, err := fakeapid.OpenRegistry(tp.registry)
	if err != nil {
		tp.t.Fatalf("open registry: %v", err)
	}
	defer reg.Close() //nolint:errcheck

	cs, err := reg.Clusters()
	if err != nil {
		tp.t.Fatalf("read registry: %v", err)
	}

	return cs
}

func clustersOf(cs []fakeapid.Cluster, c *cluster) []fakeapid.Cluster {
	var out []fakeapid.Cluster

	for _, x := range cs {
		if x.CA == c.pki.Fingerprint() {
			out = append(out, x)
		}
	}

	return out
}

// waitAll waits for the daemons to exit; on timeout it fails with their log
// tails.
func (tp *topology) waitAll(timeout time.Duration, runs ...*proc) {
	tp.t.Helper()

	deadline := time.After(timeout)

	for _, p := range runs {
		select {
		case <-p.done:
		case <-deadline:
			tp.dump()
			tp.t.Fatalf("%s still running after %s", p.name, timeout)
		}
	}
}

// dump logs the tail of every process's output, for a failing scenario.
func (tp *topology) dump() {
	tp.mu.Lock()
	procs := append([]*proc(nil), tp.procs...)
	tp.mu.Unlock()

	for _, p := range procs {
		for _, path := range []string{p.stdout, p.stderr} {
			data, err := os.ReadFile(path)
			if err != nil || len(data) == 0 {
				continue
			}

			if len(data) > 6000 {
				data = data[len(data)-6000:]
			}

			tp.t.Logf("---- %s (%s, exited %v code %d) ----\n%s", p.name, filepath.Base(path), p.exited(), p.exitCode, data)
		}
	}
}
