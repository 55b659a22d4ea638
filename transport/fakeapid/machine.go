package fakeapid

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// machineService answers like machined's v1alpha1 server
// (internal/app/machined/internal/server/v1alpha1/v1alpha1_server.go).
type machineService struct {
	machine.UnimplementedMachineServiceServer

	s *Server
}

// etcd returns the node's etcd as of now, after writing its data dir if
// etcd has written it by now.
func (s *Server) etcd() (etcdView, []Member, error) {
	var (
		view    etcdView
		members []Member
	)

	now := time.Now()

	err := s.registry.view(func(st *registryState) error {
		self, ok := st.node(s.node.IP.String(), s.pki.Fingerprint())
		if !ok {
			return fmt.Errorf("node %s is not in the registry", s.node.IP)
		}

		view = st.etcdOf(self, now)
		if view.Running(now) {
			members = st.members(view.ClusterID, now)
		}

		return nil
	})
	if err != nil {
		return etcdView{}, nil, status.Error(codes.Internal, err.Error())
	}

	if view.Running(now) {
		if err := s.fillEtcdDataDir(view.ClusterID); err != nil {
			return etcdView{}, nil, status.Error(codes.Internal, err.Error())
		}
	}

	return view, members, nil
}

// fillEtcdDataDir writes what etcd writes into /var/lib/etcd, once.
func (s *Server) fillEtcdDataDir(clusterID int) error {
	dir := s.hostPath(transport.EtcdDataDir)

	entries, _ := os.ReadDir(dir) //nolint:errcheck // missing = empty
	if len(entries) > 0 {
		return nil
	}

	for _, sub := range []string{"member/snap", "member/wal"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return fmt.Errorf("fill etcd data dir: %w", err)
		}
	}

	db := fmt.Appendf(nil, "fake etcd db of cluster %d on %s\n", clusterID, s.node.IP)
	if err := os.WriteFile(filepath.Join(dir, "member/snap/db"), db, 0o600); err != nil {
		return fmt.Errorf("fill etcd data dir: %w", err)
	}

	return nil
}

func (s *Server) timeSynced() bool {
	n := s.node

	return !n.TimeUnsynced &&
		time.Since(s.started) >= n.TimeSyncedAfter &&
		s.callCount() >= n.TimeSyncedAfterCalls
}

func (s *Server) minor() int {
	m, _ := talosMinor(s.node.TalosVersion) //nolint:errcheck // validated in Start

	return m
}

// notControlPlane is machinehelper.CheckControlplane (v1.13:
// codes.Unimplemented "%s is only available on control plane nodes").
func notControlPlane(api string) error {
	return status.Errorf(codes.Unimplemented, "%s is only available on control plane nodes", api)
}

// fromContext turns an ended context into the status the client sees.
func fromContext(ctx context.Context) error {
	return status.FromContextError(ctx.Err()).Err()
}

// Bootstrap follows Server.Bootstrap (v1.13.9), in its order:
//  1. !IsBootstrapAllowed → FailedPrecondition "bootstrap is not available yet"
//  2. not control plane → v1.13: Unimplemented "bootstrap is only available
//     on control plane nodes" (machinehelper.CheckControlplane); v1.6–v1.12:
//     FailedPrecondition "bootstrap can only be performed on a control plane
//     node"
//  3. time not synced within 5 s → FailedPrecondition "time is not in sync yet"
//  4. os.ReadDir(/var/lib/etcd) not empty → AlreadyExists "etcd data
//     directory is not empty"
//  5. BootstrapEtcd restarts etcd in bootstrap mode and the reply comes at
//     once; etcd fills the data dir later.
func (m *machineService) Bootstrap(ctx context.Context, _ *machine.BootstrapRequest) (*machine.BootstrapResponse, error) {
	s := m.s

	s.mu.Lock()
	s.bootstrapCalls++
	call := s.bootstrapCalls
	s.mu.Unlock()

	if s.node.BootstrapHook != nil {
		if err := s.node.BootstrapHook(ctx, call); err != nil {
			return nil, err
		}
	}

	fault := FaultNone
	if call <= len(s.node.BootstrapFaults) {
		fault = s.node.BootstrapFaults[call-1]
	}

	switch fault { //nolint:exhaustive
	case FaultHang:
		<-ctx.Done()

		return nil, fromContext(ctx)
	case FaultUnavailable:
		return nil, status.Error(codes.Unavailable, "connection error: desc = \"transport: error while dialing: dial unix /system/run/machined/machine.sock: connect: connection refused\"")
	}

	if call <= s.node.NotReadyBootstraps || time.Since(s.started) < s.node.NotReadyFor {
		return nil, status.Error(codes.FailedPrecondition, "bootstrap is not available yet")
	}

	if !s.node.MachineType.IsControlPlane() {
		if s.minor() >= 13 {
			return nil, notControlPlane("bootstrap")
		}

		return nil, status.Error(codes.FailedPrecondition, "bootstrap can only be performed on a control plane node")
	}

	synced := false
	if fault == FaultTimeNotSynced {
		s.sleep(ctx, s.node.TimeSyncWait)
	} else {
		synced = s.waitTimeSync(ctx)
	}

	if !synced {
		return nil, status.Error(codes.FailedPrecondition, "time is not in sync yet")
	}

	if _, _, err := s.etcd(); err != nil {
		return nil, err
	}

	if entries, _ := os.ReadDir(s.hostPath(transport.EtcdDataDir)); len(entries) > 0 { //nolint:errcheck // as Talos
		return nil, status.Error(codes.AlreadyExists, "etcd data directory is not empty")
	}

	// BootstrapEtcd stops etcd with this context first: a caller that gave
	// up gets nothing started.
	if ctx.Err() != nil {
		return nil, fromContext(ctx)
	}

	if err := s.registry.update(func(st *registryState) error {
		self, ok := st.node(s.node.IP.String(), s.pki.Fingerprint())
		if !ok {
			return fmt.Errorf("node %s is not in the registry", s.node.IP)
		}

		st.createCluster(self, time.Now())

		return nil
	}); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}

	if fault == FaultLostReply {
		<-ctx.Done()

		return nil, fromContext(ctx)
	}

	return &machine.BootstrapResponse{Messages: []*machine.Bootstrap{{}}}, nil
}

// waitTimeSync is timeresource.NewSyncCondition(...).Wait with a 5 s bound.
func (s *Server) waitTimeSync(ctx context.Context) bool {
	deadline := time.Now().Add(s.node.TimeSyncWait)

	for {
		if s.timeSynced() {
			return true
		}

		left := time.Until(deadline)
		if left <= 0 {
			return false
		}

		if !s.sleep(ctx, min(left, 10*time.Millisecond)) {
			return false
		}
	}
}

func (s *Server) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()

	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// SystemStat: BootTime is the kernel's btime in Unix seconds.
func (m *machineService) SystemStat(context.Context, *emptypb.Empty) (*machine.SystemStatResponse, error) {
	return &machine.SystemStatResponse{Messages: []*machine.SystemStat{{
		BootTime: uint64(m.s.node.BootTime.Unix()), //nolint:gosec // after 1970
	}}}, nil
}

// Version reports the configured Talos version.
func (m *machineService) Version(context.Context, *emptypb.Empty) (*machine.VersionResponse, error) {
	return &machine.VersionResponse{Messages: []*machine.Version{{
		Version: &machine.VersionInfo{Tag: m.s.node.TalosVersion, Os: "linux", Arch: runtime.GOARCH},
	}}}, nil
}

// ServiceList lists services like system.Services(...).List(): etcd exists
// on control-plane nodes only and sits in "Preparing" until it joins or is
// bootstrapped (and while the image is pulled after Bootstrap), then
// "Running", healthy once its health check passes.
func (m *machineService) ServiceList(context.Context, *emptypb.Empty) (*machine.ServiceListResponse, error) {
	s := m.s

	running := func(id string) *machine.ServiceInfo {
		return &machine.ServiceInfo{Id: id, State: "Running", Health: &machine.ServiceHealth{Healthy: true}}
	}

	services := []*machine.ServiceInfo{running("apid"), running("containerd"), running("cri")}

	if s.node.MachineType.IsControlPlane() {
		view, _, err := s.etcd()
		if err != nil {
			return nil, err
		}

		now := time.Now()
		etcd := &machine.ServiceInfo{Id: "etcd", State: "Preparing", Health: &machine.ServiceHealth{Unknown: true},
			Events: serviceEvents("Starting service", "Running pre stage")}

		switch {
		case view.Healthy(now):
			etcd = running("etcd")
		case view.Running(now):
			etcd.State = "Running"
		case view.ClusterID == 0 && s.node.EtcdJoinTimeout > 0 && now.Sub(s.started) >= s.node.EtcdJoinTimeout:
			etcd.State = "Failed"
			etcd.Events = serviceEvents("Starting service", "Running pre stage",
				"Failed to run pre stage: failed to build initial etcd cluster: timeout waiting for etcd members")
		}

		services = append(services, etcd)
	}

	services = append(services, running("kubelet"), running("machined"))

	if s.node.MachineType.IsControlPlane() {
		services = append(services, running("trustd"))
	}

	services = append(services, running("udevd"))

	return &machine.ServiceListResponse{Messages: []*machine.ServiceList{{Services: services}}}, nil
}

// serviceEvents is a service's event history as ServiceList sends it,
// oldest first.
func serviceEvents(msgs ...string) *machine.ServiceEvents {
	events := &machine.ServiceEvents{}
	for _, m := range msgs {
		events.Events = append(events.Events, &machine.ServiceEvent{Msg: m})
	}

	return events
}

// EtcdMemberList: on workers machinehelper.CheckControlplane answers
// Unimplemented "member list is only available on control plane nodes"
// (the same on v1.12 through checkControlplane). On a control-plane node
// whose etcd does not run, Talos's etcd client retries localhost:2379 until
// the caller's deadline.
func (m *machineService) EtcdMemberList(ctx context.Context, _ *machine.EtcdMemberListRequest) (*machine.EtcdMemberListResponse, error) {
	s := m.s

	if !s.node.MachineType.IsControlPlane() {
		return nil, notControlPlane("member list")
	}

	view, members, err := s.etcd()
	if err != nil {
		return nil, err
	}

	if !view.Running(time.Now()) {
		if s.node.EtcdMemberListError != nil {
			return nil, s.node.EtcdMemberListError
		}

		<-ctx.Done()

		return nil, fromContext(ctx)
	}

	msg := &machine.EtcdMembers{}

	for _, mem := range members {
		h := fnv.New64a()
		h.Write([]byte(mem.Name)) //nolint:errcheck

		msg.LegacyMembers = append(msg.LegacyMembers, mem.Name)
		msg.Members = append(msg.Members, &machine.EtcdMember{
			Id:         h.Sum64(),
			Hostname:   mem.Name,
			PeerUrls:   []string{"https://" + joinHostPort(mem.IP, "2380")},
			ClientUrls: []string{"https://" + joinHostPort(mem.IP, "2379")},
		})
	}

	return &machine.EtcdMemberListResponse{Messages: []*machine.EtcdMembers{msg}}, nil
}

func joinHostPort(ip, port string) string {
	if strings.Contains(ip, ":") {
		return "[" + ip + "]:" + port
	}

	return ip + ":" + port
}

// readChunkSize is the chunk size of Talos's stream.NewChunker.
const readChunkSize = 4096

// Read follows Server.Read: os.Stat; missing → NotFound with the stat error
// text; not a regular file → "path must be a regular file" (Unknown);
// otherwise the content in common.Data chunks.
func (m *machineService) Read(in *machine.ReadRequest, srv machine.MachineService_ReadServer) error {
	s := m.s

	if _, _, err := s.etcd(); err != nil {
		return err
	}

	host := s.hostPath(in.GetPath())

	st, err := os.Stat(host)
	if err != nil {
		err = asNodePathError(err, in.GetPath())
		if errors.Is(err, fs.ErrNotExist) {
			return status.Error(codes.NotFound, err.Error())
		}

		return err
	}

	if !st.Mode().IsRegular() {
		return errors.New("path must be a regular file")
	}

	f, err := os.Open(host)
	if err != nil {
		return asNodePathError(err, in.GetPath())
	}
	defer f.Close() //nolint:errcheck

	buf := make([]byte, readChunkSize)

	for {
		n, err := f.Read(buf)
		if n > 0 {
			if sendErr := srv.Send(&common.Data{Bytes: append([]byte(nil), buf[:n]...)}); sendErr != nil {
				return sendErr
			}
		}

		if errors.Is(err, io.EOF) {
			return nil
		}

		if err != nil {
			// Talos's chunker stops silently on a read error.
			return nil
		}
	}
}

// asNodePathError rewrites the host path of a *fs.PathError to the node path.
func asNodePathError(err error, nodePath string) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: pe.Op, Path: nodePath, Err: pe.Err}
	}

	return err
}

// List follows Server.List and archiver.Walker: the root is lstat'ed first
// and its error returned as is (so a missing root is Unknown "lstat
// /var/lib/etcd: no such file or directory", not NotFound); then the root
// and entries down to the recursion depth (none without Recurse, unlimited
// with RecursionDepth 0).
func (m *machineService) List(req *machine.ListRequest, srv machine.MachineService_ListServer) error {
	s := m.s

	if _, _, err := s.etcd(); err != nil {
		return err
	}

	root := "/" + strings.TrimPrefix(req.GetRoot(), "/")
	root = strings.TrimSuffix(root, "/")

	if root == "" {
		root = "/"
	}

	depth := 0
	if req.GetRecurse() {
		depth = int(req.GetRecursionDepth())
		if depth == 0 {
			depth = -1
		}
	}

	hostRoot := s.hostPath(root)

	if _, err := os.Lstat(hostRoot); err != nil {
		return asNodePathError(err, root)
	}

	if s.node.DataDirReadError != "" && root == transport.EtcdDataDir {
		// archiver.Walker: the walk function sees the root's read error,
		// sends it without RelativeName, and the walk ends without error.
		return srv.Send(&machine.FileInfo{Name: root, Error: s.node.DataDirReadError})
	}

	return filepath.Walk(hostRoot, func(path string, fi os.FileInfo, walkErr error) error {
		rel, err := filepath.Rel(hostRoot, path)
		if err != nil {
			return err
		}

		info := &machine.FileInfo{Name: filepath.Join(root, rel), RelativeName: rel}

		if walkErr != nil {
			info.Error = asNodePathError(walkErr, info.Name).Error()
		} else {
			info.Size = fi.Size()
			info.Mode = uint32(fi.Mode())
			info.Modified = fi.ModTime().Unix()
			info.IsDir = fi.IsDir()
		}

		if err := srv.Send(info); err != nil {
			return err
		}

		if walkErr == nil && fi.IsDir() && path != hostRoot && depth >= 0 && strings.Count(rel, string(filepath.Separator))+1 >= depth {
			return filepath.SkipDir
		}

		return nil
	})
}
