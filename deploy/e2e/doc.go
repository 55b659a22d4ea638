// Package e2e runs the shipped daemon binary the way Talos runs the
// extension, on real kernel networking: one network namespace per node on a
// bridge of its own, a fake apid process per node (cmd/fakeapid), an XFS
// STATE partition on a loop device holding a machinery-generated config, and
// the daemon in a private mount namespace chrooted into a read-only rootfs
// with Talos's mounts at their real paths. Its tests need root; they skip
// elsewhere and fail instead under CI=true.
package e2e
