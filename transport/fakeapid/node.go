package fakeapid

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// DefaultTalosVersion is the version a fake node reports unless told.
const DefaultTalosVersion = "v1.13.9"

// TalosTimeSyncWait is how long Talos's Bootstrap waits for time sync before
// answering "time is not in sync yet" (v1alpha1_server.go:
// context.WithTimeout(ctx, 5*time.Second)).
const TalosTimeSyncWait = 5 * time.Second

// Fault is an injected misbehaviour of one Bootstrap call.
type Fault string

// Faults, applied to successive Bootstrap calls (the first call gets the
// first fault, and so on; FaultNone passes).
const (
	FaultNone Fault = "none"
	// FaultTimeNotSynced: time is treated as not synced for this call, so
	// after the sync wait it answers FailedPrecondition "time is not in sync
	// yet".
	FaultTimeNotSynced Fault = "time-not-synced"
	// FaultHang: the call does nothing and holds until the caller gives up.
	FaultHang Fault = "hang"
	// FaultLostReply: the bootstrap is accepted (a cluster is created) but
	// the reply never comes before the caller's deadline.
	FaultLostReply Fault = "lost-reply"
	// FaultUnavailable: apid answers Unavailable, as when it cannot reach
	// machined (machined restarting).
	FaultUnavailable Fault = "unavailable"
)

// ParseFault checks a fault name.
func ParseFault(s string) (Fault, error) {
	switch f := Fault(s); f {
	case FaultNone, FaultTimeNotSynced, FaultHang, FaultLostReply, FaultUnavailable:
		return f, nil
	default:
		return "", fmt.Errorf("unknown bootstrap fault %q (want none, time-not-synced, hang, lost-reply or unavailable)", s)
	}
}

// Node is how one fake node behaves. Zero values give a ready, time-synced
// control-plane node on DefaultTalosVersion whose etcd waits to join.
type Node struct {
	// IP is the node's address: its identity in the registry, a SAN of its
	// certificate, and the default listen address. Required.
	IP netip.Addr
	// Hostname is the node's etcd member name; default talos-<ip>.
	Hostname string
	// MachineType defaults to controlplane.
	MachineType transport.MachineType
	// TalosVersion selects version-dependent answers (v1.13 vs <= v1.12).
	TalosVersion string
	// BootTime is SystemStat's BootTime; default: a minute before start.
	BootTime time.Time
	// BootID is served at /proc/sys/kernel/random/boot_id; default random.
	BootID string
	// FilesRoot is the node's host filesystem as Read and List see it
	// (/var/lib/etcd, /proc/sys/kernel/random/boot_id, ... live under it).
	// Default: a temporary directory removed by Close.
	FilesRoot string

	// StartDelay: the listener opens only this long after Start.
	StartDelay time.Duration
	// StartGate, when set, holds the listener closed (after StartDelay)
	// until it is closed: a test starts the node on an event, not a time.
	StartGate <-chan struct{}
	// NotReadyFor: Bootstrap answers "bootstrap is not available yet" for
	// this long after start (CRI not up yet).
	NotReadyFor time.Duration
	// NotReadyBootstraps: the first N Bootstrap calls answer the same.
	NotReadyBootstraps int

	// TimeUnsynced: time never syncs.
	TimeUnsynced bool
	// EtcdJoinTimeout: a control-plane etcd still waiting to join this long
	// after start gives up as Talos's does after EtcdJoinTimeout (30 min):
	// the service is Failed, "Failed to run pre stage: failed to build
	// initial etcd cluster: ...", until a Bootstrap restarts it. (This
	// fake still lets it join a cluster that appears later; Talos would
	// only after the boot timeout reboots the node.)
	EtcdJoinTimeout time.Duration
	// DataDirReadError: reading /var/lib/etcd itself fails (EIO on a damaged
	// filesystem); List sends it as the root's entry and ends cleanly.
	DataDirReadError string
	// NoTimeStatus: COSI is served but has no time status (NotFound), as an
	// apid that does not publish it; Bootstrap still checks time sync.
	NoTimeStatus bool
	// TimeSyncedAfter: time syncs this long after start.
	TimeSyncedAfter time.Duration
	// TimeSyncedAfterCalls: time syncs once the node served N calls.
	TimeSyncedAfterCalls int
	// TimeSyncWait is how long Bootstrap waits for sync; default
	// TalosTimeSyncWait (tests shorten it).
	TimeSyncWait time.Duration

	// BootstrapFaults apply to successive Bootstrap calls.
	BootstrapFaults []Fault
	// BootstrapHook, when set, runs first on every Bootstrap call (call
	// counts from 1); a non-nil error is the answer.
	BootstrapHook func(ctx context.Context, call int) error

	// DataFillDelay: after an accepted Bootstrap, /var/lib/etcd stays empty
	// this long (image pull), and etcd sits in "Preparing".
	DataFillDelay time.Duration
	// HealthyDelay: after the data dir fills, etcd is Running but not yet
	// healthy this long.
	HealthyDelay time.Duration
	// JoinDelay: once a cluster of the same CA has a healthy founder, this
	// control-plane node joins it after this long.
	JoinDelay time.Duration
	// InitFoundAfter: on a node of machine type init, Talos's
	// StartAllServices starts etcd in bootstrap mode by itself (v1.13.9):
	// the cluster is founded this long after the start (the etcd image
	// pull), with no Bootstrap call; DataFillDelay then applies as after
	// an accepted Bootstrap.
	InitFoundAfter time.Duration

	// COSIUnimplemented: the COSI State service is not served (Unimplemented).
	COSIUnimplemented bool
	// COSIUnregistered are resource types this apid's access policy does
	// not know, though it serves COSI: Get and List answer Talos's
	// PermissionDenied "resource type %q is not supported", as for a type
	// a Talos version predates.
	COSIUnregistered []string
	// SideroLinkAPI: the node is connected to Omni; COSI serves
	// SiderolinkConfigs (namespace config, id siderolink) with this
	// APIEndpoint, as Talos does for a SideroLinkConfig document or the
	// siderolink.api kernel argument. "": no such resource (NotFound).
	SideroLinkAPI string

	// NodeID is the node's discovery identity (Talos's cluster.Identity
	// NodeID, base62 of 32 random bytes, which names its Affiliate);
	// default: derived from the CA and IP, so every process agrees on it.
	NodeID string
	// DiscoveryAddrs are the addresses the node advertises in cluster
	// discovery (its Affiliate and Member). Default: IP plus every
	// listen address that is neither loopback nor unspecified.
	DiscoveryAddrs []netip.Addr
	// DiscoveryDisabled: the machine config turns cluster discovery off.
	// DiscoveryConfigs says DiscoveryEnabled=false, the node lists no
	// Affiliates or Members, and other nodes do not list it.
	DiscoveryDisabled bool
	// DiscoveryConfigAs: how DiscoveryConfigs is written. "" as Talos v1.7
	// to v1.13 do (DiscoveryEnabled); "v1.14": DiscoveryEnabled is no longer
	// set, RegistryServiceEnabled still is (for Omni); "absent": there is no
	// such resource (NotFound).
	DiscoveryConfigAs string
	// DiscoveryTTL: the Affiliates and Members this node lists keep a
	// stopped (Closed) node this long, as Talos keeps a vanished node's
	// entry until the discovery service expires it (~30 minutes). Zero
	// leaves stopped nodes out at once.
	DiscoveryTTL time.Duration
	// EtcdMemberListError is answered by EtcdMemberList while the local etcd
	// does not run. Default: like Talos, the call hangs until the caller's
	// deadline (the etcd client keeps retrying localhost:2379).
	EtcdMemberListError error
}

func (n *Node) setDefaults(start time.Time) error {
	if !n.IP.IsValid() {
		return errors.New("fake node needs an IP")
	}

	if n.Hostname == "" {
		n.Hostname = "talos-" + strings.NewReplacer(".", "-", ":", "-").Replace(n.IP.String())
	}

	switch n.MachineType {
	case transport.MachineTypeUnknown:
		n.MachineType = transport.MachineTypeControlPlane
	case transport.MachineTypeControlPlane, transport.MachineTypeInit, transport.MachineTypeWorker:
	default:
		return fmt.Errorf("fake node %s: unknown machine type %q", n.IP, n.MachineType)
	}

	if n.TalosVersion == "" {
		n.TalosVersion = DefaultTalosVersion
	}

	if _, err := talosMinor(n.TalosVersion); err != nil {
		return fmt.Errorf("fake node %s: %w", n.IP, err)
	}

	if n.BootTime.IsZero() {
		n.BootTime = start.Add(-time.Minute).Truncate(time.Second)
	}

	if n.BootID == "" {
		n.BootID = randomUUID()
	}

	if n.TimeSyncWait == 0 {
		n.TimeSyncWait = TalosTimeSyncWait
	}

	for _, a := range n.DiscoveryAddrs {
		if !a.IsValid() {
			return fmt.Errorf("fake node %s: invalid discovery address in %v", n.IP, n.DiscoveryAddrs)
		}
	}

	if n.DiscoveryTTL < 0 {
		return fmt.Errorf("fake node %s: negative discovery TTL %s", n.IP, n.DiscoveryTTL)
	}

	return nil
}

// talosMinor parses "v1.13.9" (or "1.12") into 13 / 12; only v1.x exists.
func talosMinor(version string) (int, error) {
	parts := strings.Split(strings.TrimPrefix(version, "v"), ".")
	if len(parts) < 2 || parts[0] != "1" {
		return 0, fmt.Errorf("talos version %q: want v1.MINOR[.PATCH]", version)
	}

	minor, err := strconv.Atoi(parts[1])
	if err != nil {
		return 0, fmt.Errorf("talos version %q: %w", version, err)
	}

	return minor, nil
}

func randomUUID() string {
	var b [16]byte

	rand.Read(b[:]) //nolint:errcheck // never fails

	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80

	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
