package daemon

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/cenkalti/backoff/v4"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/cmd/internal/config"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
)

// hostInterfaces is a host whose eth0 addresses can change under the test.
type hostInterfaces struct{ eth0 []netip.Prefix }

func (h *hostInterfaces) Interfaces() ([]discovery.Interface, error) {
	return []discovery.Interface{
		{Name: "lo", Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
		{Name: "eth0", Addrs: h.eth0},
	}, nil
}

// A DHCP lease that moves this node within the boot ends the run (Talos
// restarts the service on the new address) after two rounds without the
// address; one round without it, or a pinned NODE_IP, does not.
func TestAddressGoneEndsTheRun(t *testing.T) {
	self := netip.MustParseAddr("198.18.0.5")
	host := &hostInterfaces{eth0: []netip.Prefix{netip.MustParsePrefix("198.18.0.5/24")}}
	s := &scanner{self: self, interfaces: host}

	if err := s.CheckAddress(); err != nil {
		t.Fatalf("address present: %v", err)
	}

	host.eth0 = []netip.Prefix{netip.MustParsePrefix("198.18.0.77/24")}

	if err := s.CheckAddress(); err != nil {
		t.Fatalf("first round without the address: %v, want one more round", err)
	}

	err := s.CheckAddress()

	var permanent *backoff.PermanentError
	if !errors.Is(err, errAddressGone) || !errors.As(err, &permanent) {
		t.Fatalf("second round without the address: %v, want a permanent errAddressGone", err)
	}

	host.eth0 = []netip.Prefix{netip.MustParsePrefix("198.18.0.5/24")}
	if err := (&scanner{self: self, interfaces: host, misses: 1}).CheckAddress(); err != nil {
		t.Fatalf("address back: %v", err)
	}

	pinned := &scanner{self: self, interfaces: &hostInterfaces{}, cfg: config.Config{NodeIP: self}}
	for range 3 {
		if err := pinned.CheckAddress(); err != nil {
			t.Fatalf("pinned NODE_IP: %v", err)
		}
	}

	// Loopback addresses (the demo's nodes) answer locally across 127/8.
	lo := &scanner{self: netip.MustParseAddr("127.0.10.2"), interfaces: &hostInterfaces{}}
	for range 3 {
		if err := lo.CheckAddress(); err != nil {
			t.Fatalf("loopback node: %v", err)
		}
	}
}
