// Package discovery finds the other nodes of this Talos cluster.
//
// Addresses come from sources (TALOS_AUTO_BOOTSTRAP_DISCOVERY): Talos
// cluster discovery read through the local apid (Members: its Affiliates
// and Members, IPv4 and IPv6, on any subnet), a sweep of the local network
// (DetectNetwork picks the interface, address, prefix and gateway from
// <proc>/net/route, else <proc>/net/ipv6_route, and the interface list;
// NewTargets turns that or TALOS_AUTO_BOOTSTRAP_SCAN_CIDR into a lazy
// sequence of addresses, refusing ranges above
// TALOS_AUTO_BOOTSTRAP_MAX_SCAN_HOSTS, so an IPv6 /64 is never swept), and
// the static TALOS_AUTO_BOOTSTRAP_PEERS. Combined probes them all in one
// round with one Scanner: TCP to apid, then a TLS handshake that presents
// the os:admin certificate and accepts only a server certificate that
// chains to the cluster's machine CA. That check is what keeps other
// clusters, maintenance-mode nodes (a self-signed CA) and stale discovery
// entries out of the election: a source only names addresses. Verified
// nodes are asked for their boot time (SystemStat), boot ID and machine
// type, all within one SCAN_TIMEOUT per address, and their connections are
// kept for the next round; a node answering at several addresses is one
// peer, named by its lowest address (IPv4 before IPv6). The local node is
// probed through the same path (ProbeSelf), so every node compares the same
// SystemStat number.
//
// # Members against the sweep
//
// Time from a node appearing to its being a candidate, in a loop shaped
// like the daemon's Scan state waiting for quorum at the defaults
// (SCAN_TIMEOUT 2 s, SCAN_INTERVAL 30 s), measured by
// BenchmarkMemberToCandidate and BenchmarkSweepToCandidate (10 runs each,
// 2 vCPU, a simulation loading the machine):
//
//	members (loopback, members only):           mean 1.11 s, max 1.92 s
//	members + sweep of a /24 (namespaces):      mean 0.88 s, max 1.58 s
//	sweep of a /24 only (namespaces):           mean 16.0 s, max 28.4 s
//
// A member is seen at the next poll of the pause (every SCAN_TIMEOUT) and
// probed at once; a round whose listed addresses show a quorum skips the
// sweep. The sweep waits out the rest of the back-off pause (up to
// SCAN_INTERVAL) and then one timeout for the silent addresses.
//
// # Concurrency default: 256
//
// A sweep is bounded by the probes in flight: silent addresses each cost one
// full timeout, so a range takes ceil(hosts/concurrency) timeouts. Measured
// with BenchmarkSweepNetns (veth pairs and a bridge in network namespaces, a
// /24 with three fake apids and 251 silent addresses, 2 s timeout, 2 vCPU):
//
//	concurrency   50 (seed): 10.02 s
//	concurrency  256:         2.01 s  (1.004 x one timeout: the physical limit)
//	concurrency  512:         2.01 s  (no better: a /24 has 254 hosts)
//
// 256 covers a /24 in one wave, a 5x speed-up over the upstream README's 50. It is not
// higher because of the kernel's neighbour table: every probe of an
// on-link silent address creates an entry that stays unresolved for about
// 3 s (3 ARP solicitations 1 s apart; the benchmark finds 253 entries after
// a /24 sweep). At C probes per 2 s timeout that is about 1.5 x C entries
// pending at once, and the kernel's hard limit, gc_thresh3, is 1024 by
// default for the whole node, its own traffic included: 256 keeps about
// 384, while 1024 would overflow it. A /16 (65534 hosts) takes 256
// windows of the pace (Combined: at most SCAN_CONCURRENCY sweep probes per
// PaceWindows x SCAN_TIMEOUT), about 17 min; there, set PEERS or a
// narrower SCAN_CIDR, or raise SCAN_CONCURRENCY together with
// net.ipv4.neigh.default.gc_thresh3.
//
// # Rounds and probes
//
// A probe outlives its round (Scanner.ScanUntil): a round ends once the
// peers that answered satisfy the caller (a quorum), and the probes still
// running go on, their outcomes folded into the next round. The figures
// of "Members against the sweep" above predate this.
//
// Memory follows the concurrency, not the range: addresses are generated
// as they are probed. Peak heap growth during a sweep of silent addresses
// (same benchmark, two runs): /20 at 256: 2.8-3.6 MiB; /16 at 256:
// 3.7-3.8 MiB; /16 at 1024: 9.3-9.4 MiB.
package discovery
