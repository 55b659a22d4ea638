package election

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

func TestClassifyBootstrap(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want BootstrapOutcome
	}{
		{"accepted", nil, Accepted},
		{"already exists", status.Error(codes.AlreadyExists, "etcd data directory is not empty"), AlreadyExists},
		{"re-check inside BootstrapEtcd", status.Error(codes.Unknown, "etcd data directory is not empty"), AlreadyExists},
		{"not available yet", status.Error(codes.FailedPrecondition, "bootstrap is not available yet"), RetryLater},
		{"time not in sync", status.Error(codes.FailedPrecondition, "time is not in sync yet"), RetryLater},
		{"wrapped by transport", fmt.Errorf("bootstrap 10.0.0.1: %w", status.Error(codes.FailedPrecondition, "time is not in sync yet")), RetryLater},
		{"worker v1.6-v1.12", status.Error(codes.FailedPrecondition, "bootstrap can only be performed on a control plane node"), NotControlPlane},
		{"worker v1.13", status.Error(codes.Unimplemented, "bootstrap is only available on control plane nodes"), NotControlPlane},
		{"machine type unset v1.13", status.Error(codes.Unimplemented, "machine type is not set, cannot use bootstrap API"), RetryLater},
		{"etcd not configured", status.Error(codes.InvalidArgument, "etcd is not configured, bootstrap is not possible"), NotControlPlane},
		{"unknown FailedPrecondition message", status.Error(codes.FailedPrecondition, "something new"), Unknown},
		{"unknown Unimplemented message", status.Error(codes.Unimplemented, "unknown method Bootstrap"), Unknown},
		{"deadline exceeded", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), Unknown},
		{"unavailable", status.Error(codes.Unavailable, "connection reset by peer"), Unknown},
		{"canceled", status.Error(codes.Canceled, "context canceled"), Unknown},
		{"plain deadline", fmt.Errorf("bootstrap: %w", context.DeadlineExceeded), Unknown},
		{"dropped connection", io.ErrUnexpectedEOF, Unknown},
		{"etcd start failed", status.Error(codes.Unknown, "error starting etcd in bootstrap mode: boom"), Unknown},
		{"permission denied", status.Error(codes.PermissionDenied, "not authorized"), Rejected},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := ClassifyBootstrap(tc.err); got != tc.want {
				t.Fatalf("ClassifyBootstrap(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

func TestAfterBootstrap(t *testing.T) {
	st := announcedA()
	st.Phase, st.Bootstrapping, st.BootstrapBootID = PhaseBootstrapping, 3, "a1"

	for _, tc := range []struct {
		outcome BootstrapOutcome
		kind    DecisionKind
		phase   Phase
		sent    bool
	}{
		{Accepted, AwaitEtcd, PhaseBootstrapped, true},
		{AlreadyExists, AwaitEtcd, PhaseBootstrapped, true},
		{Unknown, AwaitEtcd, PhaseBootstrapping, true},
		{RetryLater, Wait, PhaseBootstrapping, false},
		{Rejected, Wait, PhaseBootstrapping, false},
		{NotControlPlane, Halt, PhaseBootstrapping, false},
	} {
		got, d := AfterBootstrap(st, tc.outcome, t0)
		if d.Kind != tc.kind || got.Phase != tc.phase || got.BootstrapSent != tc.sent || got.Lock == nil || got.WithdrawnThrough != 2 {
			t.Errorf("%s: %s phase=%s sent=%v lock=%v withdrawn=%d", tc.outcome, d.Kind, got.Phase, got.BootstrapSent, got.Lock, got.WithdrawnThrough)
		}
	}
}

func TestSignsFrom(t *testing.T) {
	preparing := transport.ServiceState{Found: true, State: "Preparing"}
	running := transport.ServiceState{Found: true, State: "Running", Healthy: true}
	membersErr := status.Error(codes.Unavailable, "connection error: dial tcp 127.0.0.1:2379: connect: connection refused")
	timeout := status.Error(codes.DeadlineExceeded, "context deadline exceeded")

	tests := []struct {
		name                string
		svc                 transport.ServiceState
		svcErr              error
		empty               bool
		dataErr             error
		members             []string
		mErr                error
		running, data, memb Tri
		unknowns            int
	}{
		{name: "fresh control plane before bootstrap", svc: preparing, empty: true, mErr: membersErr, running: No, data: No, memb: No},
		{name: "etcd running with members", svc: running, members: []string{"cp1"}, running: Yes, data: Yes, memb: Yes},
		{name: "data dir filled, etcd still preparing", svc: preparing, mErr: membersErr, running: No, data: Yes, memb: No},
		{name: "bootstrap requested: etcd finished", svc: transport.ServiceState{Found: true, State: "Finished"}, empty: true, mErr: membersErr, running: Yes, data: No, memb: Unsure, unknowns: 1},
		{name: "service list failed", svcErr: timeout, empty: true, mErr: membersErr, running: Unsure, data: No, memb: Unsure, unknowns: 2},
		{name: "data dir listing failed", svc: preparing, dataErr: timeout, mErr: membersErr, running: No, data: Unsure, memb: No, unknowns: 1},
		{name: "data dir absent", svc: preparing, dataErr: status.Error(codes.NotFound, "no such file"), mErr: membersErr, running: No, data: No, memb: No},
		{name: "data dir absent via transport", svc: preparing, dataErr: fmt.Errorf("list: %w", transport.ErrNotFound), mErr: membersErr, running: No, data: No, memb: No},
		{name: "etcd failed", svc: transport.ServiceState{Found: true, State: "Failed"}, empty: true, mErr: membersErr, running: Unsure, data: No, memb: Unsure, unknowns: 2},
		{name: "machine type not set yet", svcErr: errors.New("x"), empty: true, mErr: status.Error(codes.Unimplemented, "machine type is not set, cannot use member list API"), running: Unsure, data: No, memb: No, unknowns: 1},
		{name: "no etcd service", svc: transport.ServiceState{}, empty: true, mErr: timeout, running: No, data: No, memb: No},
		{name: "member list answered empty", svc: preparing, empty: true, running: No, data: No, memb: No},
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := SignsFrom(tc.svc, tc.svcErr, tc.empty, tc.dataErr, tc.members, tc.mErr)
			if s.EtcdRunning != tc.running || s.DataDirNonEmpty != tc.data || s.HasMembers != tc.memb || len(s.Unknown) != tc.unknowns {
				t.Fatalf("got running=%s data=%s members=%s unknown=%q", s.EtcdRunning, s.DataDirNonEmpty, s.HasMembers, s.Unknown)
			}
		})
	}
}

func TestParseStatusRejectsGarbage(t *testing.T) {
	good, err := MarshalStatus(*statusOf(cA, PhaseLocked, ref(cB, 2), 4, 4))
	if err != nil {
		t.Fatal(err)
	}

	if _, err := ParseStatus(good); err != nil {
		t.Fatalf("round trip: %v", err)
	}

	for _, bad := range []string{`{`, `{"version":1}`, `{"version":2,"incarnation":{"ip":"10.0.0.1","bootID":"x"},"phase":"idle"}`,
		`{"version":1,"incarnation":{"ip":"10.0.0.1","bootID":"x"},"phase":"elected"}`,
		`{"version":1,"incarnation":{"ip":"10.0.0.1","bootID":"x"},"phase":"idle","intent":1,"withdrawnThrough":2}`} {
		if _, err := ParseStatus([]byte(bad)); err == nil {
			t.Errorf("ParseStatus(%s) accepted garbage", bad)
		}
	}
}
