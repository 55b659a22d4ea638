package transport_test

import (
	"errors"
	"testing"
	"time"

	"github.com/siderolabs/talos/pkg/machinery/resources/siderolink"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport/fakeapid"
)

func TestSideroLinkEndpoint(t *testing.T) {
	t.Parallel()

	const omni = "https://omni.example.com?jointoken=secret"

	reader := func(t *testing.T) transport.Dialer {
		t.Helper()

		id, err := testPKI(t).ReaderIdentity(time.Now().Add(-time.Minute), time.Hour)
		if err != nil {
			t.Fatal(err)
		}

		return transport.NewDialer(id, transport.WithCallTimeout(2*time.Second))
	}

	tests := []struct {
		name   string
		node   fakeapid.Node
		dialer func(*testing.T) transport.Dialer
		want   string
		// wantErr: nil, transport.ErrUnsupported, or errAny (any other).
		wantErr error
	}{
		{name: "connected to Omni", node: fakeapid.Node{SideroLinkAPI: omni}, dialer: adminDialer, want: omni},
		{name: "not connected: NotFound is no endpoint", node: fakeapid.Node{}, dialer: adminDialer},
		{
			name: "no COSI", node: fakeapid.Node{SideroLinkAPI: omni, COSIUnimplemented: true}, dialer: adminDialer,
			wantErr: transport.ErrUnsupported,
		},
		{
			// An apid whose access policy does not know the type (Talos's
			// PermissionDenied "resource type ... is not supported") has no
			// SideroLink to report: not a refusal.
			name: "type unregistered", node: fakeapid.Node{COSIUnregistered: []string{siderolink.ConfigType}}, dialer: adminDialer,
			wantErr: transport.ErrUnsupported,
		},
		{
			// The resource is Sensitive: a refusal is an error, never "not
			// connected".
			name: "os:reader is refused", node: fakeapid.Node{SideroLinkAPI: omni}, dialer: reader,
			wantErr: errAny,
		},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()

			srv := startNode(t, newFleet(t), tt.node)
			n, ok := dial(t, tt.dialer(t), srv).(transport.SideroLinkReader)
			if !ok {
				t.Fatal("the gRPC node does not read SideroLink")
			}

			got, err := n.SideroLinkEndpoint(shortCtx(t))

			switch {
			case tt.wantErr == nil && (err != nil || got != tt.want):
				t.Fatalf("SideroLinkEndpoint = %q, %v; want %q", got, err, tt.want)
			case tt.wantErr == errAny && (err == nil || errors.Is(err, transport.ErrUnsupported)):
				t.Fatalf("SideroLinkEndpoint = %q, %v; want an error other than ErrUnsupported", got, err)
			case tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("SideroLinkEndpoint = %q, %v; want %v", got, err, tt.wantErr)
			}
		})
	}
}

// errAny stands for an error without a sentinel to match.
var errAny = errors.New("any error")
