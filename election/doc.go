// Package election decides, from facts, whether this node bootstraps etcd,
// follows another node, or waits. It is pure: Step, ConfirmLocks,
// AfterBootstrap and Resume take facts and return decisions, with no I/O,
// clock or randomness, so that the daemon and the deterministic simulator
// (cmd/internal/simulation) run the same code. It imports no other package of
// this module: Talos's answers are classified next to the Talos client
// (transport.EtcdSigns, transport.ClassifyBootstrap).
//
// # Why
//
// Talos refuses a second Bootstrap only on the same node (AlreadyExists when
// /var/lib/etcd is not empty). Another control-plane node whose etcd has not
// joined yet accepts Bootstrap and starts a second, separate etcd cluster.
// The protocol below guarantees at most one Bootstrap per cluster.
//
// # Invariants
//
// Safety rests on five statements, each checkable from an omniscient view
// of the site. The simulator (cmd/internal/simulation, invariants.go) asserts
// them after every event and at every publish of a status file, under
// storage faults and crashes at every effect boundary; for each one a
// mutant, a copy of this code without the guard that keeps it, shows the
// checker catching the violation.
//
//  1. SentStaysSent: a Bootstrap request that may have reached machined in
//     a boot is never recorded as unsent, withdrawn or released while that
//     boot lives (MarkSending, AfterBootstrap, rule OwnBootstrapNeverReelects).
//  2. ActsOnWhatPeersRead: the status a daemon acts on is the one peers can
//     read. A status is published only once durable (statusfile), and a
//     published one is adopted even when its save then failed.
//  3. ClusterEndsElection: a node that recorded a cluster (evidence of etcd
//     anywhere, or its own etcd healthy) never again announces, takes a new
//     lock or begins a bootstrap (rules OwnEtcdEndsElection, SeenClusterEndsElection).
//  4. LockReleasedForReason: a lock to another leader's intent k is released
//     only when that leader published a withdrawal covering k, when the
//     leader's boot ended with /var/lib/etcd empty, or when the operator
//     broke exactly that lock (rule ReleaseLockOnlyForReason).
//  5. OneFounding: no two different nodes hold, at the same moment, a
//     founding that may still create a cluster: a Bootstrap accepted by
//     machined in the node's current boot (until that boot ends with
//     /var/lib/etcd empty), an init node's own founding, or the data of
//     the cluster it founded; every bootstrapper counts (this daemon, the
//     Cluster API provider, Talos's init node). Repeats
//     on one node in one boot are one founding; an overlap counts even if
//     one founding later dies without data.
//
// 5 is the promise; 1 to 4 are what the safety argument below uses to
// prove it.
//
// # Round
//
// Each daemon round: scan the control-plane candidates; for each read the
// boot ID, boot time, status file (valid only if its boot ID is the node's
// current one) and the signs of etcd (transport.EtcdSigns); feed the
// normalized view (NormalizedView) to ViewTracker; call Step; persist the returned status BEFORE acting on the
// decision; act. BeginBootstrap: the persisted status already says
// "bootstrapping k"; read the peers once more, call ConfirmLocks, and only
// when it returns nil send Bootstrap; record the answer with
// transport.ClassifyBootstrap and AfterBootstrap, persist.
//
// # Identity and ranking
//
// An incarnation is (IP, boot ID): boot IDs identify, boot times rank. Rank
// orders by boot time (oldest first) then numeric IP. A changed boot time
// with the same boot ID is a clock step (Talos steps the clock when time
// first syncs): it changes the view (ViewTracker restarts the stability
// delay) but not the identity.
//
// # Status file and locks
//
// Each node publishes a Status (status.json). A lock names one intent:
// (leader IP, leader boot ID, intent number). Intent numbers are per node and
// monotonic across restarts and reboots; WithdrawnThrough is monotonic too,
// so a follower that polls slowly cannot miss a withdrawal.
//
// # Step rules, in the order Step checks them
//
// The code cites a rule by its name. The first rule that applies decides.
//
//  1. Resume: the same incarnation continues from its file. A new boot
//     keeps the intent counter, WithdrawnThrough and a lock to another
//     leader, withdraws an own announced intent (nothing of it is in
//     flight), and keeps bootstrapping/bootstrapped for
//     OwnBootstrapNeverReelects to judge by the data directory.
//  2. DoneStaysDone: done stays done, and this node's etcd Running and
//     healthy makes it done.
//  3. StandDownForOtherBootstrapper: a node whose status says it stood
//     down (Talos shows that Omni manages the machine, or a peer's status
//     of its current boot says it stood down) never announces, takes a new
//     lock or sends Bootstrap; it withdraws an own announced intent and
//     keeps the rest, locks and a bootstrap that may be under way included
//     (standdown.go).
//  4. OwnBootstrapNeverReelects: phases bootstrapping and bootstrapped never
//     elect again. With etcd data present, wait for etcd (AwaitEtcd). In
//     this boot without data: a request never sent (SendUnsent; see Send
//     for how MarkSending and AfterBootstrap move it) is sent, or
//     withdrawn when a cluster appeared meanwhile (a peer's bootstrapping
//     phase counts only when written by the boot that sent it). A request
//     that was sent may be under way (Talos accepts a repeat while
//     /var/lib/etcd is empty and restarts etcd in bootstrap mode): it is
//     resent on this node only, after ResendAfter without any sign of
//     etcd; without a resend a lost request would block the cluster for
//     ever, since followers stay locked. A bootstrap of an earlier boot
//     (BootstrapBootID differs) with an empty /var/lib/etcd died with that
//     boot's memory: it is withdrawn and the election goes on; with the
//     directory unknown, wait.
//  5. ReleaseLockOnlyForReason: a lock to another leader's intent k is
//     released only when (a) that node's status has WithdrawnThrough >= k
//     (and Intent >= k, so a wiped file with a reset counter cannot release
//     it); (b) that node's boot ID differs from the lock's, its status of
//     the new boot proves /var mounted, and its /var/lib/etcd is known
//     empty and etcd is not running: the request lived in memory and died
//     with the boot; (c) the operator set BreakLock to exactly this lock.
//     Never on a timer: a leader cut off by a partition may have
//     bootstrapped, and nobody can see it. A lock finds its leader by node
//     name, so a leader back at another address is recognised.
//  6. OwnEtcdEndsElection: signs of etcd on this node (service started,
//     data, members) end the election: wait for own etcd (Joined), never
//     bootstrap.
//  7. InitNodeFoundsCluster: a Talos init node known by any source (this
//     node's own type, a peer's apid or status, a discovery member that
//     need not answer) founds the cluster by itself: it is remembered like
//     a cluster, an unsent bootstrap is withdrawn, ConfirmLocks refuses,
//     the init node waits for its own etcd and everyone else to join
//     (init.go). Two init nodes: nobody bootstraps, and the reason names
//     both.
//  8. SeenClusterEndsElection: any sign of etcd on a peer, or a peer whose
//     valid status says bootstrapping, bootstrapped or done, means a
//     cluster exists or is being created: Follow, after withdrawing an own
//     announced intent. The evidence is kept in Status.Cluster and ends the
//     election for good, even when the node that showed it drops out of
//     sight.
//  9. LockToBootstrappingPeer: an unlocked node locks to a peer that is
//     bootstrapping its live intent, so that the peer's last check counts
//     a node that rebooted or arrived late.
//  10. ConfigMismatchBlocks: a peer with another QUORUM_NODES or
//     LEADER_ORDER blocks leading and locking, on both sides, and is
//     remembered: the misconfigured node may later be cut off and find its
//     smaller quorum alone.
//  11. OutrankedLeaderWithdraws: an announced leader that no longer ranks
//     first in its view withdraws at once (withdrawing is always safe
//     before Bootstrap). This covers "a higher-ranked peer announced" and
//     "a peer is locked to a higher-ranked leader" and needs no timer. A
//     leader still first goes on to BootstrapWhenConfirmed.
//  12. QuorumInView: with fewer than Quorum nodes in view, wait. An
//     unsynced node ranks last and may still lock (Bootstrap needs synced
//     time, and boot times move when the clock is stepped), but it never
//     announces.
//  13. LockHolds: locked to another leader, follow.
//  14. FirstAnnouncesOthersLock: not locked, the first-ranked node locks
//     to itself with a new intent (Intent+1), publishes it (announced) and
//     leads; the others lock to the highest-ranked live intent in view
//     (announced, locked to itself, not withdrawn), or wait for the top
//     candidate to announce.
//  15. BootstrapWhenConfirmed: a leader still ranking first begins the
//     bootstrap only when the view has been stable, and it has been
//     announced, for PRE_BOOTSTRAP_DELAY (followers lock within that time;
//     a peer that has not locked blocks anyway); every peer in view has a
//     readable status of its current boot locked to exactly (self, k); no
//     node (self included) has an unknown cluster check; and the view holds
//     at least Quorum nodes. Any blocker is named in the Reason (a node
//     without status file: every control-plane node must run the
//     extension). The returned status says bootstrapping k, set before the
//     RPC.
//
// Before Step ranks anyone, normalize (observe.go) drops this node seen at
// another address and merges one machine reached at several addresses, by
// boot id; and an absent /var/lib/etcd on a peer (or an empty one before
// its etcd service exists) is unknown until a status of its current boot
// proves it mounted: apid answers before EPHEMERAL, and Talos v1.14's ETCD
// volume, are mounted.
//
// ConfirmLocks, after "bootstrapping k" is published, re-reads the peers and
// requires at least Quorum nodes (self included) locked to exactly (self, k),
// no peer bootstrapping itself, and no peer showing etcd or an unknown
// cluster check (a cluster made by hand meanwhile must not get a twin). It does not require every peer in view:
// a node appearing after the first check sees our bootstrapping status and
// follows without locking, and must not block a resend forever.
//
// # Bootstrap answers (transport.ClassifyBootstrap, from the Talos source)
//
// nil: accepted. AlreadyExists (or Unknown "etcd data directory is not
// empty" from BootstrapEtcd's re-check): wait for etcd health, not a success
// by itself. FailedPrecondition "bootstrap is not available yet" / "time is
// not in sync yet", Unimplemented "machine type is not set",
// PermissionDenied/Unauthenticated: nothing happened, retry.
// FailedPrecondition "bootstrap can only be performed on a control plane
// node" (v1.6–v1.12), Unimplemented "bootstrap is only available on control
// plane nodes" (v1.13), InvalidArgument "etcd is not configured": halt, with
// the intent kept. Everything else (DeadlineExceeded, Unavailable, Canceled,
// dropped connections, unknown messages): may have happened; stay
// bootstrapping and resend on this node only.
//
// # Safety argument
//
// Claim: no two distinct nodes' Bootstrap requests both take effect. Suppose
// leaders A (intent a) and B (intent b) both sent Bootstrap. Each sent only
// after ConfirmLocks saw at least Quorum nodes' statuses locked to its
// intent, read after its "bootstrapping" status was persisted. With Quorum a
// majority of the control-plane nodes, the two sets share a node N. Let A's
// read of N come first. N's lock changed from (A,a) to (B,b) afterwards, so
// it was released by ReleaseLockOnlyForReason: (a) needs A to publish WithdrawnThrough >= a,
// which A never does in the boot it set Bootstrapping=a in, and which could
// not have been published earlier either (intents are never reused, a
// withdrawn intent never becomes bootstrapping); (b) needs A rebooted with an
// empty data directory, and then A's request died with the boot and A's
// next boot withdraws a rather than resending it (OwnBootstrapNeverReelects), so A's request
// did not take effect; (c) is the operator's assertion. A leader's own lock
// cannot be counted by the other leader, since a node holds one lock. Locks
// survive daemon restarts and reboots because they live in the status file,
// written atomically before any action.
//
// Assumptions. QUORUM_NODES is a majority of the control-plane count
// (floor(n/2)+1 or more); the protocol cannot know n, so this is the
// operator's promise. QUORUM_NODES=1 is safe only for a single control-plane
// node, or when every node always sees every other: with 1, two nodes that
// cannot see each other each form a quorum of one. Every control-plane node
// runs the extension (a node without status file blocks the bootstrap, it
// is never ignored). /var/lib/kommodity-autobootstrap survives reboots.
//
// # Faults the rules close
//
// The simulator, and reviews reproduced in it, found each of these; a rule
// above closes it, and a mutant that removes the guard makes the simulator
// find the fault again (docs/development.md, "Adding a negative control"):
// a node that counted itself at another address as a peer; a peer's absent
// /var/lib/etcd, read before its volume was mounted, taken as proof that
// no cluster exists; a leader back at a new address not recognised; an
// unlocked node missed by a bootstrapping peer's last check; a node with
// another QUORUM_NODES founding alone; a resend refused "not now" after an
// unknown answer that erased the first request's "may have happened"; a
// send found marked but unanswered (a crash, a full /var) forgotten; a
// peer's bootstrapping phase kept from an earlier boot taken as a cluster;
// a lock renamed into place before a failed directory fsync published but
// not held in memory.
//
// Each rule has mutants: patches in cmd/internal/simulation/testdata/mutants,
// each removing one guard (or bringing back the algorithm it replaced),
// applied only to a test build (go test -overlay) by the simulation
// package's TestMutants, which demands that the simulator, or the rule's
// unit test, then find the fault named for that mutant. The shipped code
// has no switch that turns a rule off.
//
// Liveness: once the nodes see each other and are up, ranks agree, every
// lower-ranked leader withdraws (OutrankedLeaderWithdraws), its followers
// release (ReleaseLockOnlyForReason, a), everyone locks to the top
// candidate's intent (FirstAnnouncesOthersLock), which bootstraps after
// PRE_BOOTSTRAP_DELAY (BootstrapWhenConfirmed); the others see its
// bootstrapping status (SeenClusterEndsElection) and wait for their etcd to
// join.
package election
