// Package credentials gives the daemon the client identity it talks to apid
// with, and tells whether this node is a control-plane node.
//
// # API
//
// Two credential sources implement the daemon's states.CredentialSource:
// Describe() names the source for the log, and Load(ctx) returns the node's
// machine type and a transport.Identity (an os:admin client certificate plus
// the cluster CA pool that peers' apid certificates are verified against).
//
//   - StateSource (default): mounts the STATE partition read-only, reads
//     config.yaml, parses it with machinery's configloader (single- and
//     multi-document configs) and returns an *Issuer holding the machine CA
//     (machine.ca) in memory. The Issuer signs a 24 h os:admin client
//     certificate with secrets.NewAdminCertificateAndKey and renews it in
//     memory when less than a third of its validity remains. A worker config
//     returns MachineTypeWorker and no identity, with no error: a clean stop.
//   - TalosconfigSource (TALOS_AUTO_BOOTSTRAP_TALOSCONFIG=/path): takes the
//     current context's ca, crt and key from a talosconfig. Nothing is
//     mounted; the certificate must carry os:admin and ExtKeyUsage
//     [ClientAuth]; it cannot be renewed, so an expiry within a week is
//     logged as a warning and an expired one refused. The machine type is
//     MachineTypeUnknown.
//
// ControlPlaneDetector implements states.ControlPlaneMarker.
//
// Errors that retrying cannot fix (corrupt or unusable config, bad CA, bad
// talosconfig) are wrapped with backoff.Permanent at the outermost level; the
// rest (device not there yet, mount failed, config.yaml not written yet) are
// retryable. Key material is only ever in memory: it is not logged, not
// written, and String/GoString/MarshalJSON of Issuer and the talosconfig
// identity print only certificate subjects and fingerprints.
//
// # STATE
//
// Devices tried, in order: /dev/disk/by-partlabel/STATE, then
// /dev/mapper/luks2-STATE (an encrypted STATE as opened by Talos; the
// partition itself then holds a LUKS header, which is recognised and
// skipped). The filesystem is mounted, as xfs with ro,nosuid,nodev,noexec,
// on a fresh directory inside a fresh 0700 directory under
// /run/kommodity-autobootstrap. When Talos
// holds STATE read-write (v1.6–v1.9 at /system/state, v1.12+ detached) the
// kernel refuses that read-only mount with EBUSY; the fallback mounts with
// the same read-write superblock flags, which shares Talos's superblock, and
// bind-remounts the mount point read-only at once. Nothing is written. The
// mount is held only while config.yaml is read (a read-only mount of ours
// would in turn make Talos's own read-write mount fail with EBUSY), one
// mount at a time per process, and it is unmounted (lazily as a fallback)
// and its directory removed on every path: errors, panics, cancellation.
//
// # Control-plane detection
//
// Talos creates /system/secrets/etcd only on control-plane nodes, possibly a
// little after the extension starts. ControlPlaneDetector.Present looks once;
// Wait re-checks a missing directory for a grace period (default 60 s,
// TALOS_AUTO_BOOTSTRAP_DETECT_GRACE). The rule:
//
//   - The directory present means control plane, unless a machine config
//     says otherwise.
//   - When a machine config was read (StateSource), its machine type has the
//     last word. A controlplane (or init) config means control plane even if
//     the directory is absent (it may simply not exist yet). A worker config
//     means worker even if the directory exists: /system is a tmpfs, so the
//     directory cannot be a leftover of an earlier role; its presence next
//     to a worker config is an inconsistency, a worker config carries no CA
//     key to sign with, and Talos refuses Bootstrap on workers. Never acting
//     as control plane on a node whose config says worker is the safe side.
//   - A missing directory therefore sends the daemon to read the config at
//     once (a worker exits without waiting). Without a config
//     (TalosconfigSource, MachineTypeUnknown) the local apid's machine type
//     decides; only when apid cannot tell is the directory re-checked for
//     the grace period.
package credentials
