package simulation

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/states/statusfile"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// apiNode is one daemon's connection to the apid answering at addr: the
// transport.Node the daemon's states use, with Talos's answers and codes.
type apiNode struct {
	w     *world
	d     *daemonRun
	addr  netip.Addr
	calls int
	// keyName is "rpc|<addr>|", the middle of its requests' keys.
	keyName string
}

var _ transport.Node = (*apiNode)(nil)

// rpc sends one request: it travels to whoever answers at addr (unless a
// cut or a loss drops it), is answered there from that machine's state at
// arrival, maybe after serverDelay, and travels back. With no reply the
// deadline answers.
func (a *apiNode) rpc(ctx context.Context, method string, timeout time.Duration, serverDelay time.Duration,
	answer func(m *tnode) (any, error),
) (any, error) {
	if dl, ok := ctx.Deadline(); ok {
		// The bubble's clock is frozen while the simulation runs, so the
		// time left is the timeout the caller set.
		timeout = min(timeout, time.Until(dl))
	}

	a.w.mu.Lock()
	a.calls++
	if a.keyName == "" {
		a.keyName = "rpc|" + a.addr.String() + "|"
	}

	key := requestKey(a.d.keyPrefix, a.keyName, uint64(a.calls), 6, method)
	a.w.mu.Unlock()

	if method == "Bootstrap" && a.w.bootstrapCrash(a.d, a.d.rng, "before the Bootstrap RPC") {
		return nil, errProcessGone
	}

	return a.w.park(ctx, a.d, key, func(c *call) {
		w := a.w
		self := a.d.node
		m := w.nodeAt(a.addr)

		if m == self && w.answerLocally(c, a, method, serverDelay, answer) {
			return
		}

		c.timeout = w.at(timeout, func() {
			w.answer(c, nil, a.fail(method, status.Error(codes.DeadlineExceeded, "context deadline exceeded")))
		})

		if m == nil || w.lost() {
			return
		}

		var arrive func()

		arrive = func() {
			if !w.reachable(self, m) {
				return
			}

			if w.hooks.rpc != nil {
				drop, hold := w.hooks.rpc(self, m, method)
				if drop {
					return
				}

				if hold > 0 {
					w.at(hold, arrive)

					return
				}
			}

			if !m.apidUp {
				w.at(w.delay(m, self), func() {
					w.answer(c, nil, a.fail(method, status.Error(codes.Unavailable, "connection error: connect: connection refused")))
				})

				return
			}

			v, err := a.serve(m, method, answer)
			if errors.Is(err, errNoReply) {
				return
			}

			w.at(serverDelay+w.delay(m, self), func() {
				if w.reachable(self, m) && !(method == "Bootstrap" && w.inChaos() && w.chance(w.p.replyLoss)) {
					w.answer(c, v, err)

					if method == "Bootstrap" && !a.d.dead {
						// Its answer is in, not yet recorded.
						if f := self.crashAfterBootstrap; f != nil && err == nil {
							self.crashAfterBootstrap = nil
							w.crash(self, "after the Bootstrap RPC")
							f()
						} else {
							w.bootstrapCrashPoint(a.d, w.rng, "after the Bootstrap RPC")
						}
					}
				}
			})
		}

		w.at(w.delay(self, m), arrive)
	})
}

// answerLocally answers a call to the daemon's own apid at once, after the
// chaos: its own loopback route neither drops nor delays measurably, and a
// waiting daemon polls its own etcd every second (a quarter of all calls),
// each call three events on the time line. Bootstrap keeps the full path
// (its crash points and lost replies), and so does a call that gets no
// reply (its deadline answers) or that a family's hook may hold or drop.
// The scheduler lets the answered daemon run before the next event.
func (w *world) answerLocally(c *call, a *apiNode, method string, serverDelay time.Duration, answer func(m *tnode) (any, error)) bool {
	m := a.d.node
	if method == "Bootstrap" || serverDelay != 0 || w.inChaos() || w.hooks.rpc != nil || !m.apidUp || !w.reachable(m, m) {
		return false
	}

	v, err := a.serve(m, method, answer)
	if errors.Is(err, errNoReply) {
		return false
	}

	w.answer(c, v, err)

	return true
}

// serve is machine m answering a request as it arrives: its error names
// the call, except errNoReply (it holds the request until the deadline).
func (a *apiNode) serve(m *tnode, method string, answer func(m *tnode) (any, error)) (any, error) {
	v, err := answer(m)
	if err != nil && !errors.Is(err, errNoReply) {
		err = a.fail(method, err)
	}

	return v, err
}

// errNoReply: the server holds the request until the caller gives up.
var errNoReply = errors.New("no reply before the deadline")

func (a *apiNode) fail(op string, err error) error {
	return fmt.Errorf("%s on %s: %w", op, a.addr, err)
}

func (a *apiNode) Addr() netip.Addr { return a.addr }
func (a *apiNode) Close() error     { return nil }

func (a *apiNode) BootTime(ctx context.Context) (time.Time, error) {
	v, err := a.rpc(ctx, "SystemStat", transport.DefaultCallTimeout, 0, func(m *tnode) (any, error) {
		return time.Unix(m.bootTimeUnix(), 0), nil
	})
	if err != nil {
		return time.Time{}, err
	}

	return v.(time.Time), nil
}

func (a *apiNode) BootID(ctx context.Context) (string, error) {
	v, err := a.rpc(ctx, "Read boot_id", transport.DefaultCallTimeout, 0, func(m *tnode) (any, error) {
		return m.bootID, nil
	})
	if err != nil {
		return "", err
	}

	return v.(string), nil
}

func (a *apiNode) ReadFile(ctx context.Context, path string, limit int64) ([]byte, error) {
	v, err := a.rpc(ctx, "Read "+path, transport.DefaultCallTimeout, 0, func(m *tnode) (any, error) {
		switch {
		case path == transport.BootIDPath:
			return []byte(m.bootID + "\n"), nil
		case path != statusfile.Path:
			return nil, fmt.Errorf("%w: %w", transport.ErrNotFound, status.Error(codes.NotFound, "open "+path+": no such file or directory"))
		case !m.varMounted || m.storage().status() == nil:
			// Before EPHEMERAL is mounted /var is the root filesystem's
			// empty directory: the status file looks missing.
			return nil, fmt.Errorf("%w: %w", transport.ErrNotFound, status.Error(codes.NotFound, "open "+path+": no such file or directory"))
		case int64(len(m.storage().status())) > limit:
			return nil, fmt.Errorf("file larger than %d bytes", limit)
		}

		// The disk never changes a file's bytes in place, and nothing
		// that reads them writes to them: the read shares them.
		return m.storage().status(), nil
	})
	if err != nil {
		return nil, err
	}

	return v.([]byte), nil
}

func (a *apiNode) MachineType(ctx context.Context) (transport.MachineType, error) {
	v, err := a.rpc(ctx, "COSI MachineType", transport.DefaultCallTimeout, 0, func(m *tnode) (any, error) {
		if m.init {
			return transport.MachineTypeInit, nil
		}

		if m.cp {
			return transport.MachineTypeControlPlane, nil
		}

		return transport.MachineTypeWorker, nil
	})
	if err != nil {
		return "", err
	}

	return v.(transport.MachineType), nil
}

func (a *apiNode) EtcdService(ctx context.Context) (transport.ServiceState, error) {
	v, err := a.rpc(ctx, "ServiceList", transport.DefaultCallTimeout, 0, func(m *tnode) (any, error) {
		if m.etcd == "" {
			return transport.ServiceState{}, nil
		}

		return transport.ServiceState{Found: true, State: m.etcd, Healthy: m.healthy, Message: m.etcdMsg}, nil
	})
	if err != nil {
		return transport.ServiceState{}, err
	}

	return v.(transport.ServiceState), nil
}

func (a *apiNode) EtcdMembers(ctx context.Context) ([]string, error) {
	v, err := a.rpc(ctx, "EtcdMemberList", transport.DefaultCallTimeout, 0, func(m *tnode) (any, error) {
		if !m.cp {
			return nil, status.Error(codes.Unimplemented, "etcd member list is only available on control plane nodes")
		}

		if m.etcd != "Running" {
			// machined's etcd client waits for localhost:2379 to be ready
			// (clientv3's WaitForReady) until the caller's deadline.
			return nil, errNoReply
		}

		return a.w.members(m.data), nil
	})
	if err != nil {
		return nil, err
	}

	return v.([]string), nil
}

func (a *apiNode) EtcdDataDirEmpty(ctx context.Context) (bool, error) {
	v, err := a.rpc(ctx, "List "+transport.EtcdDataDir, transport.DefaultCallTimeout, 0, func(m *tnode) (any, error) {
		if !m.varMounted || !m.cp || (!m.etcdVisible() && !m.etcdMountPoint) {
			// machined's List answers the raw lstat error: code Unknown.
			return nil, fmt.Errorf("%w: %w", transport.ErrNotFound,
				status.Error(codes.Unknown, "lstat "+transport.EtcdDataDir+": no such file or directory"))
		}

		if !m.etcdVisible() {
			return true, nil // the ETCD volume's bare mount point
		}

		return m.data == 0, nil
	})
	if err != nil {
		return false, err
	}

	return v.(bool), nil
}

func (a *apiNode) TimeSynced(ctx context.Context) (bool, error) {
	v, err := a.rpc(ctx, "COSI TimeStatus", transport.DefaultCallTimeout, 0, func(m *tnode) (any, error) {
		return m.synced, nil
	})
	if err != nil {
		return false, err
	}

	return v.(bool), nil
}

// Bootstrap is machined's handler, checks in Talos's order.
func (a *apiNode) Bootstrap(ctx context.Context) error {
	delay := time.Duration(0)

	a.w.mu.Lock()
	if m := a.w.nodeAt(a.addr); m != nil && m.services && m.cp && !m.synced {
		delay = timeSyncWait
	}
	a.w.mu.Unlock()

	_, err := a.rpc(ctx, "Bootstrap", transport.DefaultBootstrapTimeout, delay, func(m *tnode) (any, error) {
		return nil, a.w.machinedBootstrap(m)
	})

	return err
}

func (w *world) machinedBootstrap(m *tnode) error { return w.machinedBootstrapBy(m, "daemon") }

func (w *world) machinedBootstrapBy(m *tnode, by string) error {
	switch {
	case !m.services:
		return status.Error(codes.FailedPrecondition, "bootstrap is not available yet")
	case !m.cp:
		return status.Error(codes.Unimplemented, "bootstrap is only available on control plane nodes")
	case !m.synced || (w.inChaos() && w.chance(w.p.syncFlap)) || w.now < m.refuseSyncUntil:
		return status.Error(codes.FailedPrecondition, "time is not in sync yet")
	case m.data != 0:
		return status.Error(codes.AlreadyExists, "etcd data directory is not empty")
	}

	w.accept(m, by)

	return nil
}

// refill schedules p's data directory to fill at p.fillAt (again, when a
// scenario moved it: the earlier event then finds it not due).
func (w *world) refill(m *tnode, p *pendingBootstrap) {
	w.at(p.fillAt-w.now, func() {
		if m.pending != p || m.bootID != p.bootID || !m.up || w.now < p.fillAt {
			return
		}

		m.pending = nil
		m.data = w.chk.newCluster(w, m)
		w.at(time.Second, func() {
			if m.data != 0 && m.up && !m.stopping && m.bootID == p.bootID {
				m.etcd, m.healthy = "Running", true
			}
		})
	})
}

// accept is machined taking a Bootstrap: etcd restarts in bootstrap mode,
// the data directory fills later, the request dies with the boot.
func (w *world) accept(m *tnode, by string) {
	m.bootstrap++
	w.path("bootstrap accepted (" + by + ")")
	w.chk.accepted(w, m, by)

	if m.pending != nil && m.pending.bootID == m.bootID {
		w.path("bootstrap repeated while the data directory was empty")
		w.tracef(m, "machined accepted a repeated Bootstrap (%s): same cluster", by)

		return
	}

	fill := w.dur(500*time.Millisecond, w.p.fillMax)
	if w.chance(w.p.slowPull) {
		// An etcd image pull that outlasts the daemon's resend wait (Talos
		// retries a pull for up to 20 minutes).
		fill = w.dur(w.p.cfg.EtcdWait, w.p.cfg.EtcdWait+slowPullExtra)
		w.path("etcd image pull slower than the resend wait")
	}

	p := &pendingBootstrap{bootID: m.bootID, fillAt: w.now + fill}
	m.pending = p
	m.etcd, m.healthy = "Preparing", false
	w.tracef(m, "machined accepted Bootstrap (%s); data directory fills at %.1fs", by, p.fillAt.Seconds())

	w.refill(m, p)

	if w.now+2*w.p.fillMax+60*time.Second < w.p.chaosEnd && w.chance(w.p.rebootAfterAccept) {
		w.at(w.dur(0, 2*w.p.fillMax), func() { w.reboot(m, "after accepting Bootstrap") })
	}
}
