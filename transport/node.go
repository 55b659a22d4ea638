// Package transport is the daemon's view of a Talos node: the few apid calls
// the bootstrap needs, behind an interface so that states, discovery and the
// election can be tested against fakes and simulated without a network.
package transport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/netip"
	"time"
)

// APIDPort is the port apid listens on, on every Talos node.
const APIDPort = 50000

// Paths read on nodes through apid's Read and List RPCs.
const (
	BootIDPath  = "/proc/sys/kernel/random/boot_id"
	EtcdDataDir = "/var/lib/etcd"
)

// MachineType is a node's role as Talos reports it.
type MachineType string

// Machine types, spelled as Talos spells them.
const (
	MachineTypeUnknown      MachineType = ""
	MachineTypeInit         MachineType = "init"
	MachineTypeControlPlane MachineType = "controlplane"
	MachineTypeWorker       MachineType = "worker"
)

// IsControlPlane tells whether the node runs etcd (init is the legacy name).
func (t MachineType) IsControlPlane() bool {
	return t == MachineTypeControlPlane || t == MachineTypeInit
}

// ServiceState is the etcd entry of ServiceList.
type ServiceState struct {
	Found   bool   // the service exists (only on control-plane nodes)
	State   string // "Preparing", "Running", ...
	Healthy bool
	Message string // of the service's last event, "Failed to run pre stage: ..."
}

// Running is Omni's and our definition of "etcd is up": Running and healthy.
func (s ServiceState) Running() bool { return s.Found && s.State == "Running" && s.Healthy }

// ErrNotFound is returned by ReadFile when the node has no such file.
var ErrNotFound = errors.New("file not found on node")

// ErrUnsupported is returned when the node does not serve an optional API
// (for example COSI on an apid that answers Unimplemented).
var ErrUnsupported = errors.New("not supported by node")

// Node is one node's apid. Every method honours ctx and adds a default
// deadline when ctx has none. gRPC status errors are returned wrapped with
// %w, so status.FromError / status.Code still classify them.
type Node interface {
	// Addr is the address the node was dialled at; it is the node's identity.
	Addr() netip.Addr
	// BootTime is SystemStat's BootTime (kernel btime).
	BootTime(ctx context.Context) (time.Time, error)
	// BootID is /proc/sys/kernel/random/boot_id read through Read, trimmed.
	BootID(ctx context.Context) (string, error)
	// ReadFile streams a file through Read, refusing more than limit bytes.
	ReadFile(ctx context.Context, path string, limit int64) ([]byte, error)
	// MachineType is COSI config.MachineType, else derived from ServiceList.
	MachineType(ctx context.Context) (MachineType, error)
	// EtcdService is the etcd entry of ServiceList (Found=false when absent).
	EtcdService(ctx context.Context) (ServiceState, error)
	// EtcdMembers is EtcdMemberList{QueryLocal: true}: member hostnames.
	EtcdMembers(ctx context.Context) ([]string, error)
	// EtcdDataDirEmpty lists /var/lib/etcd: true when it has no entries.
	// A directory that does not exist is an error wrapping ErrNotFound:
	// before /var is mounted every node answers so.
	EtcdDataDirEmpty(ctx context.Context) (bool, error)
	// TimeSynced is COSI time.Status Synced; ErrUnsupported without COSI.
	TimeSynced(ctx context.Context) (bool, error)
	// Bootstrap sends BootstrapRequest{}.
	Bootstrap(ctx context.Context) error
	// Close releases the connection.
	Close() error
}

// Identity is what a client presents and trusts: the os:admin client
// certificate (renewed by its owner, so it is fetched per handshake) and the
// cluster's machine CA that every node's apid certificate chains to.
type Identity interface {
	ClientCertificate() (*tls.Certificate, error)
	ClusterCA() *x509.CertPool
}

// Dialer opens Nodes. Dial returns once an RPC-capable connection exists;
// callers confirm liveness with an RPC.
type Dialer interface {
	Dial(ctx context.Context, addr netip.AddrPort) (Node, error)
}
