package transport_test

import (
	"cmp"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	timeres "github.com/siderolabs/talos/pkg/machinery/resources/time"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

func testPKI(t *testing.T) *fakeapid.PKI {
	t.Helper()

	p, err := fakeapid.SharedPKI()
	if err != nil {
		t.Fatal(err)
	}

	return p
}

// newFleet is a cluster of fake nodes on loopback with its own registry.
func newFleet(t *testing.T) *fakeapid.Fleet {
	t.Helper()

	f := fakeapid.NewFleet(testPKI(t), fakeapid.NewRegistry(), netip.MustParseAddr("127.0.10.1"))
	t.Cleanup(func() { f.Close() }) //nolint:errcheck

	return f
}

// startNode starts node with a short time-sync wait (Talos waits 5 s).
func startNode(t *testing.T, f *fakeapid.Fleet, node fakeapid.Node) *fakeapid.Server {
	t.Helper()

	if node.TimeSyncWait == 0 {
		node.TimeSyncWait = 50 * time.Millisecond
	}

	srv, err := f.Start(node)
	if err != nil {
		t.Fatal(err)
	}

	return srv
}

func adminDialer(t *testing.T) transport.Dialer {
	t.Helper()

	id, err := testPKI(t).AdminIdentity(time.Now().Add(-time.Minute), time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	return transport.NewDialer(id, transport.WithCallTimeout(2*time.Second), transport.WithBootstrapTimeout(3*time.Second))
}

func dial(t *testing.T, d transport.Dialer, srv *fakeapid.Server) transport.Node {
	t.Helper()

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()

	n, err := d.Dial(ctx, srv.Addr())
	if err != nil {
		t.Fatalf("dial %s: %v", srv.Addr(), err)
	}

	t.Cleanup(func() { n.Close() }) //nolint:errcheck

	return n
}

func shortCtx(t *testing.T) context.Context {
	t.Helper()

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	t.Cleanup(cancel)

	return ctx
}

func TestReadOnlyMethods(t *testing.T) {
	t.Parallel()

	boot := time.Unix(1_700_000_000, 0)
	bootID := "0b5e3f5c-6d0e-4c4b-9a57-4f0e1b7f2a11"

	tests := []struct {
		name        string
		node        fakeapid.Node
		machineType transport.MachineType
		etcd        transport.ServiceState
		synced      bool
		syncErr     error
		syncCode    codes.Code // of syncErr; default Unimplemented
	}{
		{
			name:        "control plane with COSI",
			node:        fakeapid.Node{MachineType: transport.MachineTypeControlPlane},
			machineType: transport.MachineTypeControlPlane,
			etcd:        transport.ServiceState{Found: true, State: "Preparing", Message: "Running pre stage"},
			synced:      true,
		},
		{
			name: "init with COSI",
			// Its etcd image still pulling: not founded yet.
			node:        fakeapid.Node{MachineType: transport.MachineTypeInit, InitFoundAfter: time.Hour},
			machineType: transport.MachineTypeInit,
			etcd:        transport.ServiceState{Found: true, State: "Preparing", Message: "Running pre stage"},
			synced:      true,
		},
		{
			name:        "worker with COSI, time unsynced",
			node:        fakeapid.Node{MachineType: transport.MachineTypeWorker, TimeUnsynced: true},
			machineType: transport.MachineTypeWorker,
			etcd:        transport.ServiceState{},
			synced:      false,
		},
		{
			name:        "control plane without COSI",
			node:        fakeapid.Node{MachineType: transport.MachineTypeControlPlane, COSIUnimplemented: true},
			machineType: transport.MachineTypeControlPlane,
			etcd:        transport.ServiceState{Found: true, State: "Preparing", Message: "Running pre stage"},
			syncErr:     transport.ErrUnsupported,
		},
		{
			// Bootstrap's own check still applies; the round goes on.
			name:        "control plane with COSI, no time status",
			node:        fakeapid.Node{MachineType: transport.MachineTypeControlPlane, NoTimeStatus: true},
			machineType: transport.MachineTypeControlPlane,
			etcd:        transport.ServiceState{Found: true, State: "Preparing", Message: "Running pre stage"},
			syncErr:     transport.ErrUnsupported,
			syncCode:    codes.NotFound,
		},
		{
			// COSI served, but the access policy knows neither type
			// (PermissionDenied "resource type ... is not supported"): read
			// as no COSI, not as a refusal that would stop every round.
			name: "control plane, machine type and time status types unregistered",
			node: fakeapid.Node{
				MachineType: transport.MachineTypeControlPlane, COSIUnregistered: []string{configres.MachineTypeType, timeres.StatusType},
			},
			machineType: transport.MachineTypeControlPlane,
			etcd:        transport.ServiceState{Found: true, State: "Preparing", Message: "Running pre stage"},
			syncErr:     transport.ErrUnsupported,
			syncCode:    codes.PermissionDenied,
		},
		{
			name:        "worker without COSI",
			node:        fakeapid.Node{MachineType: transport.MachineTypeWorker, COSIUnimplemented: true},
			machineType: transport.MachineTypeWorker,
			etcd:        transport.ServiceState{},
			syncErr:     transport.ErrUnsupported,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			tt.node.BootTime = boot
			tt.node.BootID = bootID
			srv := startNode(t, newFleet(t), tt.node)
			n := dial(t, adminDialer(t), srv)
			ctx := shortCtx(t)

			if n.Addr() != srv.Node().IP {
				t.Errorf("Addr = %s, want %s", n.Addr(), srv.Node().IP)
			}

			bt, err := n.BootTime(ctx)
			if err != nil || !bt.Equal(boot) {
				t.Errorf("BootTime = %v, %v; want %v", bt, err, boot)
			}

			id, err := n.BootID(ctx)
			if err != nil || id != bootID {
				t.Errorf("BootID = %q, %v; want %q", id, err, bootID)
			}

			mt, err := n.MachineType(ctx)
			if err != nil || mt != tt.machineType {
				t.Errorf("MachineType = %q, %v; want %q", mt, err, tt.machineType)
			}

			svc, err := n.EtcdService(ctx)
			if err != nil || svc != tt.etcd {
				t.Errorf("EtcdService = %+v, %v; want %+v", svc, err, tt.etcd)
			}

			// A control-plane fake has an empty /var/lib/etcd; a worker has
			// none: absent is not "empty" (before /var is mounted every
			// node answers so), it is an error wrapping ErrNotFound.
			empty, err := n.EtcdDataDirEmpty(ctx)

			switch {
			case tt.machineType.IsControlPlane() && (err != nil || !empty):
				t.Errorf("EtcdDataDirEmpty = %v, %v; want true", empty, err)
			case !tt.machineType.IsControlPlane() && (!errors.Is(err, transport.ErrNotFound) || empty):
				t.Errorf("EtcdDataDirEmpty = %v, %v; want an error wrapping ErrNotFound", empty, err)
			}

			synced, err := n.TimeSynced(ctx)
			if tt.syncErr != nil {
				code := status.Code(err)
				if state.IsNotFoundError(err) { // COSI's client keeps NotFound in its own error type
					code = codes.NotFound
				}

				if want := cmp.Or(tt.syncCode, codes.Unimplemented); !errors.Is(err, tt.syncErr) || code != want {
					t.Errorf("TimeSynced error = %v, want %v wrapping %v", err, tt.syncErr, want)
				}
			} else if err != nil || synced != tt.synced {
				t.Errorf("TimeSynced = %v, %v; want %v", synced, err, tt.synced)
			}

			wantMethods := []string{
				machine.MachineService_SystemStat_FullMethodName,
				machine.MachineService_Read_FullMethodName,
				"/cosi.resource.State/Get",
			}
			if tt.node.COSIUnimplemented || slices.Contains(tt.node.COSIUnregistered, configres.MachineTypeType) {
				wantMethods = append(wantMethods, machine.MachineService_ServiceList_FullMethodName)
			}

			wantMethods = append(wantMethods,
				machine.MachineService_ServiceList_FullMethodName,
				machine.MachineService_List_FullMethodName,
				"/cosi.resource.State/Get",
			)
			if got := srv.Methods(); !slices.Equal(got, wantMethods) {
				t.Errorf("calls = %v\nwant    %v", got, wantMethods)
			}
		})
	}
}

func TestReadFile(t *testing.T) {
	t.Parallel()

	srv := startNode(t, newFleet(t), fakeapid.Node{})
	n := dial(t, adminDialer(t), srv)

	big := make([]byte, 10_000) // several Read chunks
	for i := range big {
		big[i] = byte('a' + i%26)
	}

	statusPath := statusfile.Path
	host := filepath.Join(srv.FilesRoot(), statusPath)

	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(host, big, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		path     string
		limit    int64
		want     []byte
		notFound bool
		code     codes.Code
		msg      string
	}{
		{name: "multi-chunk file", path: statusPath, limit: int64(len(big)), want: big},
		{name: "over the limit", path: statusPath, limit: int64(len(big)) - 1, code: codes.Unknown, msg: "larger than 9999 bytes"},
		{name: "missing", path: "/var/lib/nothing", limit: 10, notFound: true, code: codes.NotFound, msg: "stat /var/lib/nothing: no such file or directory"},
		{name: "directory", path: "/var/lib", limit: 10, code: codes.Unknown, msg: "path must be a regular file"},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := n.ReadFile(shortCtx(t), tt.path, tt.limit)
			if tt.want != nil {
				if err != nil || !slices.Equal(got, tt.want) {
					t.Fatalf("ReadFile = %d bytes, %v; want %d bytes", len(got), err, len(tt.want))
				}

				return
			}

			if err == nil {
				t.Fatalf("ReadFile succeeded with %d bytes, want an error", len(got))
			}

			if errors.Is(err, transport.ErrNotFound) != tt.notFound {
				t.Errorf("errors.Is(%v, ErrNotFound) = %v, want %v", err, !tt.notFound, tt.notFound)
			}

			if status.Code(err) != tt.code {
				t.Errorf("status.Code(%v) = %v, want %v", err, status.Code(err), tt.code)
			}

			if !containsAll(err.Error(), tt.msg, srv.Node().IP.String(), tt.path) {
				t.Errorf("error %q should contain %q, the node and the path", err, tt.msg)
			}
		})
	}
}

func TestBootIDValidation(t *testing.T) {
	t.Parallel()

	srv := startNode(t, newFleet(t), fakeapid.Node{BootID: "not-a-uuid"})
	n := dial(t, adminDialer(t), srv)

	_, err := n.BootID(shortCtx(t))
	if err == nil {
		t.Fatal("BootID accepted garbage")
	}

	if !containsAll(err.Error(), srv.Node().IP.String(), "not-a-uuid") {
		t.Errorf("error %q should name the peer and the value", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}

	return true
}
