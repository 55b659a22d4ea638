package simulation

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/discovery"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/states"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// scanner sweeps the simulated /24 as discovery.Scanner sweeps a range:
// every address is probed at once with SCAN_TIMEOUT; a peer counts only when
// its apid certificate chains to the cluster CA; its boot id, boot time and
// machine type come from its own apid; a known peer stays in the result
// until it misses discovery.DefaultMissThreshold probes in a row; this
// node's own boot id is never a peer, whatever address answers with it.
type scanner struct {
	w     *world
	d     *daemonRun
	clock *nodeClock
	nodes map[netip.Addr]*apiNode
	known map[netip.Addr]*knownPeer
	scans int
}

type knownPeer struct {
	peer   probeAnswer
	misses int
}

type probeAnswer struct {
	ok, cp, foreign bool
	bootID          string
	bootTime        time.Time
}

var _ states.Scanner = (*scanner)(nil)

func (s *scanner) NextDelay(known, attempt int) time.Duration {
	return discovery.NextScanDelay(known, s.d.cfg.Quorum, attempt, s.d.cfg.ScanInterval)
}

// Pause sleeps: the simulated network has no discovery members to watch.
func (s *scanner) Pause(ctx context.Context, d time.Duration) error {
	return states.Sleep(ctx, s.clock, d)
}

func (s *scanner) Close() error { return nil }

// CheckAddress: the model moves a node's address only across reboots.
func (s *scanner) CheckAddress() error { return nil }

func (s *scanner) Scan(ctx context.Context) (states.ScanResult, error) {
	return s.sweep(ctx, "scan", func() []netip.Addr { return s.w.rangeAddrs() })
}

// Refresh re-probes the known peers only, as discovery.Scanner.Scan with no
// targets does: it ends when they all answered, or at SCAN_TIMEOUT.
func (s *scanner) Refresh(ctx context.Context) (states.ScanResult, error) {
	return s.sweep(ctx, "refresh", func() []netip.Addr {
		return slices.SortedFunc(maps.Keys(s.known), netip.Addr.Compare)
	})
}

// sweep probes addrs (computed by the scheduler when the request starts).
// A sweep of the range waits out SCAN_TIMEOUT, as silent addresses make the
// real one do; a refresh ends with its last answer.
func (s *scanner) sweep(ctx context.Context, kind string, addrs func() []netip.Addr) (states.ScanResult, error) {
	w := s.w

	w.mu.Lock()
	s.scans++
	key := fmt.Sprintf("%s|%06d", kind, s.scans)
	w.mu.Unlock()

	v, err := w.park(ctx, s.d, key, func(c *call) {
		self := s.d.node
		targets := addrs()
		answers := make(map[netip.Addr]probeAnswer, len(targets))
		expected := 0

		for _, addr := range targets {
			if addr == self.ip {
				continue
			}

			expected++

			m := w.nodeAt(addr)
			if m == nil || w.lost() {
				continue
			}

			w.at(w.delay(self, m), func() {
				if !w.reachable(self, m) || !m.apidUp {
					return
				}

				a := probeAnswer{ok: true, foreign: m.foreign, cp: m.cp, bootID: m.bootID, bootTime: time.Unix(m.bootTimeUnix(), 0)}

				w.at(w.delay(m, self), func() {
					if !w.reachable(self, m) || c.answered {
						return
					}

					answers[addr] = a

					if kind == "refresh" && len(answers) == expected {
						w.answer(c, answers, nil)
					}
				})
			})
		}

		w.at(s.d.cfg.ScanTimeout, func() { w.answer(c, answers, nil) })
	})
	if err != nil {
		return states.ScanResult{}, err
	}

	return s.result(v.(map[netip.Addr]probeAnswer)), nil
}

// result folds one sweep into the known peers (daemon goroutine).
func (s *scanner) result(answers map[netip.Addr]probeAnswer) states.ScanResult {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()

	var res states.ScanResult

	selfBoot := s.d.node.bootID

	for addr, a := range answers {
		res.Probed++

		switch {
		case a.foreign:
			res.Foreign++
		case a.bootID == selfBoot:
			// This node answering at another address.
		case !a.cp:
			res.Workers++
			delete(s.known, addr)
		default:
			s.known[addr] = &knownPeer{peer: a}
		}
	}

	addrs := make([]netip.Addr, 0, len(s.known))

	for addr, k := range s.known {
		if _, ok := answers[addr]; !ok {
			k.misses++
			if k.misses >= discovery.DefaultMissThreshold {
				delete(s.known, addr)

				continue
			}
		}

		addrs = append(addrs, addr)
	}

	slices.SortFunc(addrs, netip.Addr.Compare)

	for _, addr := range addrs {
		k := s.known[addr]

		node, ok := s.nodes[addr]
		if !ok {
			node = &apiNode{w: w, d: s.d, addr: addr}
			s.nodes[addr] = node
		}

		res.ControlPlane = append(res.ControlPlane, discovery.Peer{
			Addr: addr, Node: node, BootTime: k.peer.bootTime, BootID: k.peer.bootID,
			MachineType: transport.MachineTypeControlPlane, Misses: k.misses,
		})
	}

	return res
}

// rangeAddrs is every address that answers in the segment (mu held).
func (w *world) rangeAddrs() []netip.Addr {
	out := make([]netip.Addr, 0, len(w.nodes)+len(w.aliases))

	for _, n := range w.nodes {
		out = append(out, n.ip)
	}

	for a := range w.aliases {
		out = append(out, a)
	}

	slices.SortFunc(out, netip.Addr.Compare)

	return out
}
