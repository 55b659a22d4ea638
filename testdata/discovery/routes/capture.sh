#!/bin/sh
# Captures the route fixtures from the running kernel: each scenario is built
# in a network namespace of its own (198.18.0.0/15 addresses only; veth pairs
# with both ends inside the namespace stand in for NICs; bridges; nothing
# connected to the outside), then its /proc/net/route and `ip -j addr` are
# saved. Needs root and iproute2. ci-container.* are the files of the CI
# container itself, copied as found (cp /proc/net/route; ip -j addr).
set -eu
cd "$(dirname "$0")"

scenario() {
	name=$1
	ns=kab-fx-$name
	ip netns add "$ns"
	trap 'ip netns del "$ns"' EXIT
	ip -n "$ns" link set lo up
	while read -r cmd; do
		[ -n "$cmd" ] && ip -n "$ns" $cmd
	done
	ip netns exec "$ns" cat /proc/net/route >"$name.route"
	ip -n "$ns" -j addr >"$name.addr.json"
	ip netns del "$ns"
	trap - EXIT
}

scenario multi <<'S'
link add eth0 type veth peer name peth0
link add eth1 type veth peer name peth1
link add eth2 type veth peer name peth2
addr add 198.18.1.10/24 dev eth0
addr add 198.19.5.10/24 dev eth1
addr add 198.18.200.10/22 dev eth2
link set eth0 up
link set peth0 up
link set eth1 up
link set peth1 up
link set eth2 up
link set peth2 up
route add default via 198.18.1.1 dev eth0 metric 1024
route add 198.19.100.0/24 via 198.19.5.1 dev eth1
S

scenario bridge <<'S'
link add docker0 type bridge
addr add 198.19.0.1/16 dev docker0
link add vethd0 type veth peer name vethd1
link set vethd0 master docker0
link set docker0 up
link add eth0 type veth peer name peth0
link add br0 type bridge
link set eth0 master br0
addr add 198.18.4.20/23 dev br0
link set eth0 up
link set peth0 up
link set br0 up
route add default via 198.18.4.1 dev br0 metric 1024
link add cni0 type bridge
addr add 198.19.128.1/24 dev cni0
link set cni0 up
S

scenario nodefault <<'S'
link add docker0 type bridge
addr add 198.19.0.1/16 dev docker0
link add vethd0 type veth peer name vethd1
link set vethd0 master docker0
link set docker0 up
link add eth0 type veth peer name peth0
link add eth1 type veth peer name peth1
addr add 198.18.7.5/24 dev eth0
addr add 198.18.8.5/24 dev eth1
link set eth0 up
link set peth0 up
link set eth1 up
link set peth1 up
S

scenario secondary-default <<'S'
link add eth0 type veth peer name peth0
link add eth1 type veth peer name peth1
addr add 198.18.9.10/24 dev eth0
addr add 198.19.9.10/24 dev eth1
link set eth0 up
link set peth0 up
link set eth1 up
link set peth1 up
route add default via 198.19.9.1 dev eth1
S

scenario two-defaults <<'S'
link add eth0 type veth peer name peth0
link add eth1 type veth peer name peth1
addr add 198.18.12.10/24 dev eth0
addr add 198.18.13.10/24 dev eth1
link set eth0 up
link set peth0 up
link set eth1 up
link set peth1 up
route add default via 198.18.12.1 dev eth0 metric 600
route add default via 198.18.13.1 dev eth1 metric 100
S

scenario vip <<'S'
link add eth0 type veth peer name peth0
addr add 198.18.10.100/32 dev eth0
addr add 198.18.10.5/24 dev eth0
link set eth0 up
link set peth0 up
route add default via 198.18.10.1 dev eth0
S

scenario p2p31 <<'S'
link add eth0 type veth peer name peth0
addr add 198.18.11.0/31 dev eth0
link set eth0 up
link set peth0 up
route add default via 198.18.11.1 dev eth0
S
