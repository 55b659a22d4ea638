package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
)

func TestClassifyBootstrap(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want election.BootstrapOutcome
	}{
		{"accepted", nil, election.Accepted},
		{"already exists", status.Error(codes.AlreadyExists, "etcd data directory is not empty"), election.AlreadyExists},
		{"re-check inside BootstrapEtcd", status.Error(codes.Unknown, "etcd data directory is not empty"), election.AlreadyExists},
		{"v1.14 unattended install under way (refused before etcd stops)", status.Error(codes.Unknown, "bootstrap is not allowed during unattended install (phase: installing)"), election.RetryLater},
		{"not available yet", status.Error(codes.FailedPrecondition, "bootstrap is not available yet"), election.RetryLater},
		{"time not in sync", status.Error(codes.FailedPrecondition, "time is not in sync yet"), election.RetryLater},
		{"wrapped by transport", fmt.Errorf("bootstrap 10.0.0.1: %w", status.Error(codes.FailedPrecondition, "time is not in sync yet")), election.RetryLater},
		{"worker v1.6-v1.12", status.Error(codes.FailedPrecondition, "bootstrap can only be performed on a control plane node"), election.NotControlPlane},
		{"worker v1.13", status.Error(codes.Unimplemented, "bootstrap is only available on control plane nodes"), election.NotControlPlane},
		{"machine type unset v1.13", status.Error(codes.Unimplemented, "machine type is not set, cannot use bootstrap API"), election.RetryLater},
		{"etcd not configured", status.Error(codes.InvalidArgument, "etcd is not configured, bootstrap is not possible"), election.NotControlPlane},
		{"unknown FailedPrecondition message", status.Error(codes.FailedPrecondition, "something new"), election.Unknown},
		{"unknown Unimplemented message", status.Error(codes.Unimplemented, "unknown method Bootstrap"), election.Unknown},
		{"deadline exceeded", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), election.Unknown},
		{"unavailable", status.Error(codes.Unavailable, "connection reset by peer"), election.Unknown},
		{"canceled", status.Error(codes.Canceled, "context canceled"), election.Unknown},
		{"plain deadline", fmt.Errorf("bootstrap: %w", context.DeadlineExceeded), election.Unknown},
		{"dropped connection", io.ErrUnexpectedEOF, election.Unknown},
		{"etcd start failed", status.Error(codes.Unknown, "error starting etcd in bootstrap mode: boom"), election.Unknown},
		{"permission denied", status.Error(codes.PermissionDenied, "not authorized"), election.Rejected},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClassifyBootstrap(tc.err); got != tc.want {
				t.Fatalf("ClassifyBootstrap(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

func TestEtcdSigns(t *testing.T) {
	preparing := ServiceState{Found: true, State: "Preparing"}
	running := ServiceState{Found: true, State: "Running", Healthy: true}
	membersErr := status.Error(codes.Unavailable, "connection error: dial tcp 127.0.0.1:2379: connect: connection refused")
	timeout := status.Error(codes.DeadlineExceeded, "context deadline exceeded")

	tests := []struct {
		name                string
		svc                 ServiceState
		svcErr              error
		empty               bool
		dataErr             error
		members             []string
		mErr                error
		running, data, memb election.Tri
		unknowns            int
	}{
		{name: "fresh control plane before bootstrap", svc: preparing, empty: true, mErr: membersErr, running: election.No, data: election.No, memb: election.No},
		{name: "etcd running with members", svc: running, members: []string{"cp1"}, running: election.Yes, data: election.Yes, memb: election.Yes},
		{name: "data dir filled, etcd still preparing", svc: preparing, mErr: membersErr, running: election.No, data: election.Yes, memb: election.No},
		{name: "bootstrap requested: etcd stopped for it, not started again", svc: ServiceState{Found: true, State: "Finished", Message: "Bootstrap requested"}, empty: true, mErr: membersErr, running: election.Unsure, data: election.No, memb: election.Unsure, unknowns: 2},
		// v1.14: a reboot ends an etcd that never ran as Finished too.
		{name: "shutdown: etcd finished", svc: ServiceState{Found: true, State: "Finished", Message: "Service finished successfully"}, empty: true, mErr: membersErr, running: election.Unsure, data: election.No, memb: election.Unsure, unknowns: 2},
		{name: "service list failed", svcErr: timeout, empty: true, mErr: membersErr, running: election.Unsure, data: election.No, memb: election.Unsure, unknowns: 2},
		{name: "data dir listing failed", svc: preparing, dataErr: timeout, mErr: membersErr, running: election.No, data: election.Unsure, memb: election.No, unknowns: 1},
		{name: "data dir absent", svc: preparing, dataErr: status.Error(codes.NotFound, "no such file"), mErr: membersErr, running: election.No, data: election.No, memb: election.No},
		{name: "data dir absent via transport", svc: preparing, dataErr: fmt.Errorf("list: %w", ErrNotFound), mErr: membersErr, running: election.No, data: election.No, memb: election.No},
		{name: "etcd gave up joining", svc: ServiceState{Found: true, State: "Failed", Message: "Failed to run pre stage: failed to build initial etcd cluster: timeout"}, empty: true, mErr: membersErr, running: election.No, data: election.No, memb: election.No},
		{name: "etcd failed", svc: ServiceState{Found: true, State: "Failed"}, empty: true, mErr: membersErr, running: election.Unsure, data: election.No, memb: election.Unsure, unknowns: 2},
		{name: "machine type not set yet", svcErr: errors.New("x"), empty: true, mErr: status.Error(codes.Unimplemented, "machine type is not set, cannot use member list API"), running: election.Unsure, data: election.No, memb: election.No, unknowns: 1},
		{name: "no etcd service", svc: ServiceState{}, empty: true, mErr: timeout, running: election.No, data: election.No, memb: election.No},
		{name: "member list answered empty", svc: preparing, empty: true, running: election.No, data: election.No, memb: election.No},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := EtcdSigns(tc.svc, tc.svcErr, tc.empty, tc.dataErr, tc.members, tc.mErr)
			if s.EtcdRunning != tc.running || s.DataDirNonEmpty != tc.data || s.HasMembers != tc.memb || len(s.Unknown) != tc.unknowns {
				t.Fatalf("got running=%s data=%s members=%s unknown=%q", s.EtcdRunning, s.DataDirNonEmpty, s.HasMembers, s.Unknown)
			}
		})
	}
}

func TestEtcdSignsDataDirUnproven(t *testing.T) {
	preparing := ServiceState{Found: true, State: "Preparing"}
	deadline := status.Error(codes.DeadlineExceeded, "context deadline exceeded")

	tests := []struct {
		name     string
		svc      ServiceState
		svcErr   error
		empty    bool
		dataErr  error
		data     election.Tri
		unproven bool
	}{
		{name: "NotFound", svc: preparing, dataErr: status.Error(codes.NotFound, "no such file"), data: election.No, unproven: true},
		{name: "ErrNotFound from this package", svc: preparing, dataErr: fmt.Errorf("list: %w", ErrNotFound), data: election.No, unproven: true},
		{name: "raw lstat error as Unknown", svc: preparing, dataErr: status.Error(codes.Unknown, "lstat /var/lib/etcd: no such file or directory"), data: election.No, unproven: true},
		{name: "empty directory", svc: preparing, empty: true, data: election.No},
		// etcd's service exists only once Talos has mounted every volume
		// (v1.14's ETCD volume lists as an empty mount point before).
		{name: "empty directory, no etcd service yet", empty: true, data: election.No, unproven: true},
		{name: "empty directory, service list failed", svcErr: deadline, empty: true, data: election.No, unproven: true},
		{name: "directory with data", svc: preparing, data: election.Yes},
		{name: "permission denied", svc: preparing, dataErr: status.Error(codes.Unknown, "lstat /var/lib/etcd: permission denied"), data: election.Unsure},
		{name: "deadline", svc: preparing, dataErr: deadline, data: election.Unsure},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := EtcdSigns(tc.svc, tc.svcErr, tc.empty, tc.dataErr, nil, nil)
			if s.DataDirNonEmpty != tc.data || s.DataDirUnproven != tc.unproven {
				t.Fatalf("got data=%s unproven=%v, want data=%s unproven=%v", s.DataDirNonEmpty, s.DataDirUnproven, tc.data, tc.unproven)
			}
		})
	}
}
