package states

import (
	"errors"
	"testing"

	"github.com/rs/zerolog"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

func TestCredentials(t *testing.T) {
	errNoConfig := errors.New("machine config not found on STATE")

	for _, tc := range []struct {
		name           string
		secretsPresent bool
		creds          memCredentials
		marker         memMarker
		want           fsm.Event
		wantErr        error
		wantDialer     bool
	}{
		{name: "worker config", creds: memCredentials{machineType: transport.MachineTypeWorker}, want: fsm.WorkerDetected},
		// The config outranks the secrets directory both ways.
		{name: "worker config despite secrets", secretsPresent: true,
			creds: memCredentials{machineType: transport.MachineTypeWorker}, want: fsm.WorkerDetected},
		{name: "control plane", secretsPresent: true,
			creds: memCredentials{machineType: transport.MachineTypeControlPlane}, want: fsm.CredentialsReady, wantDialer: true},
		{name: "control plane config, no secrets yet",
			creds: memCredentials{machineType: transport.MachineTypeControlPlane}, want: fsm.CredentialsReady, wantDialer: true},
		// A control-plane node must retry, never end like a worker.
		{name: "load error with secrets present", secretsPresent: true,
			creds: memCredentials{err: errNoConfig}, wantErr: errNoConfig},
		{name: "load error, secrets appear in the grace period",
			creds: memCredentials{err: errNoConfig}, marker: memMarker{appears: true}, wantErr: errNoConfig},
		{name: "load error, no secrets ever",
			creds: memCredentials{err: errNoConfig}, want: fsm.WorkerDetected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dialer := &memDialer{}
			s := NewSession(Deps{
				Log: zerolog.Nop(), Credentials: tc.creds, Marker: &tc.marker,
				Dialer: func(transport.Identity) transport.Dialer { return dialer },
			})
			s.secretsPresent = tc.secretsPresent

			event, err := s.credentials(t.Context())
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}

			if event != tc.want {
				t.Fatalf("event %q, want %q", event, tc.want)
			}

			if got := s.dialer != nil; got != tc.wantDialer {
				t.Fatalf("dialer prepared: %v, want %v", got, tc.wantDialer)
			}
		})
	}
}
