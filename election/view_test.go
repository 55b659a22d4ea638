package election

import (
	"net/netip"
	"testing"
)

func TestMachinesCountsOnePerBootID(t *testing.T) {
	at := func(ip, bootID string) Candidate {
		return Candidate{Incarnation: Incarnation{IP: netip.MustParseAddr(ip), BootID: bootID}}
	}

	for _, tc := range []struct {
		name string
		view []Candidate
		want int
	}{
		{name: "self alone", view: []Candidate{at("10.0.0.1", "a")}, want: 1},
		{name: "three machines", view: []Candidate{at("10.0.0.1", "a"), at("10.0.0.2", "b"), at("10.0.0.3", "c")}, want: 3},
		// A VIP forwarding to b, and this node at its IPv6 address.
		{name: "aliases", view: []Candidate{at("10.0.0.1", "a"), at("10.0.0.2", "b"), at("10.0.0.100", "b"), at("fd00::1", "a")}, want: 2},
	} {
		if got := Machines(tc.view); got != tc.want {
			t.Errorf("%s: %d machines, want %d", tc.name, got, tc.want)
		}
	}
}
