package states

import (
	"errors"
	"testing"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

func TestDetect(t *testing.T) {
	errDisk := errors.New("stat /system/secrets/etcd: input/output error")

	for _, tc := range []struct {
		name    string
		marker  memMarker
		want    fsm.Event
		wantErr error
	}{
		{name: "secrets present", marker: memMarker{present: true}, want: fsm.ControlPlaneDetected},
		// Not a verdict yet: Credentials reads the machine config next.
		{name: "secrets absent", marker: memMarker{}, want: fsm.SecretsMissing},
		{name: "marker unreadable", marker: memMarker{err: errDisk}, wantErr: errDisk},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewSession(Deps{Marker: &tc.marker})

			event, err := s.detect(t.Context())
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}

			if event != tc.want {
				t.Fatalf("event %q, want %q", event, tc.want)
			}

			if s.secretsPresent != tc.marker.present {
				t.Fatalf("secretsPresent %v, want %v", s.secretsPresent, tc.marker.present)
			}

			if tc.marker.waits != 0 {
				t.Fatal("detect waited for the secrets: the grace period belongs to Credentials")
			}
		})
	}
}
