package discovery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// ErrSilent marks an address where nothing accepted a TCP connection on the
// apid port within the timeout (no host, or nothing listening).
var ErrSilent = errors.New("no answer on the apid port")

// ErrForeign marks an address whose server certificate does not chain to the
// cluster CA: another cluster, a node in maintenance mode, any other TLS
// server. Such a peer is never a candidate.
var ErrForeign = errors.New("not a node of this cluster")

// Peer is a node of this cluster found at Addr.
type Peer struct {
	Addr        netip.Addr
	BootTime    time.Time // SystemStat BootTime (kernel btime)
	BootID      string    // /proc/sys/kernel/random/boot_id
	MachineType transport.MachineType
	// Aliases are the other addresses the same boot answered at (a second
	// interface, IPv6 next to IPv4): one node, one candidate.
	Aliases []netip.Addr
	// Node is the open connection, owned by the Scanner that found it: do
	// not close it. It stays open until the scanner drops the peer (after
	// MissThreshold failed re-probes) or is closed.
	Node transport.Node
	// Misses counts the consecutive failed re-probes of a known peer; 0 when
	// the last probe answered. A peer is reported until Misses reaches the
	// scanner's MissThreshold, so that one slow answer does not make a
	// candidate vanish from the election.
	Misses int
}

// prober does what every probe does, for sweeps and for self alike.
type prober struct {
	tls     *tls.Config
	dial    func(ctx context.Context, network, address string) (net.Conn, error)
	dialer  transport.Dialer
	port    uint16
	timeout time.Duration
}

// probe checks one address within one timeout: TCP connect, a TLS
// handshake that verifies the server certificate against the cluster CA,
// then the apid connection and the peer's description. On error the result
// wraps ErrSilent, ErrForeign or the failure of a peer that answered.
func (p *prober) probe(ctx context.Context, addr netip.Addr) (Peer, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ap := netip.AddrPortFrom(addr, p.port)

	// The cheap handshake sorts out the many addresses that are not nodes
	// of this cluster before any gRPC machinery is set up for them.
	if err := p.handshake(ctx, ap); err != nil {
		return Peer{}, err
	}
	node, err := p.dialer.Dial(ctx, ap)
	if err != nil {
		if transport.IsCertificateRejected(err) {
			return Peer{}, fmt.Errorf("probe %s: %w: %w", ap, ErrForeign, err)
		}
		return Peer{}, fmt.Errorf("probe %s: dial apid: %w", ap, err)
	}
	peer, err := describe(ctx, node)
	if err != nil {
		node.Close() //nolint:errcheck // the description error is the news
		return Peer{}, fmt.Errorf("probe %s: %w", ap, err)
	}
	peer.Addr = addr
	return peer, nil
}

// reprobe describes a known peer again over its open connection.
func (p *prober) reprobe(ctx context.Context, node transport.Node) (Peer, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	peer, err := describe(ctx, node)
	if err != nil {
		return Peer{}, fmt.Errorf("re-probe %s: %w", node.Addr(), err)
	}
	peer.Addr = node.Addr()
	return peer, nil
}

func (p *prober) handshake(ctx context.Context, ap netip.AddrPort) error {
	raw, err := p.dial(ctx, "tcp", ap.String())
	if err != nil {
		if errors.Is(err, syscall.ECONNRESET) {
			// Something accepted the connection and reset it at once.
			return fmt.Errorf("probe %s: %w", ap, err)
		}
		return fmt.Errorf("probe %s: %w: %w", ap, ErrSilent, err)
	}
	conn := tls.Client(raw, p.tls)
	defer conn.Close()
	if err := conn.HandshakeContext(ctx); err != nil {
		if transport.IsCertificateRejected(err) {
			return fmt.Errorf("probe %s: %w: %w", ap, ErrForeign, err)
		}
		return fmt.Errorf("probe %s: TLS handshake: %w", ap, err)
	}
	return nil
}

// describe asks a node for its boot time, boot ID and machine type. The
// three calls run at once, so a node that hangs costs one deadline, not
// three.
func describe(ctx context.Context, node transport.Node) (Peer, error) {
	var (
		wg                         sync.WaitGroup
		peer                       Peer
		errTime, errID, errMachine error
	)
	wg.Go(func() {
		peer.BootTime, errTime = node.BootTime(ctx)
		if errTime == nil && (peer.BootTime.IsZero() || peer.BootTime.Unix() <= 0) {
			errTime = fmt.Errorf("no boot time in SystemStat (%v)", peer.BootTime)
		}
		if errTime != nil {
			errTime = fmt.Errorf("boot time: %w", errTime)
		}
	})
	wg.Go(func() {
		peer.BootID, errID = node.BootID(ctx)
		if errID == nil && !validBootID(peer.BootID) {
			errID = fmt.Errorf("%q is not a UUID", clip([]byte(peer.BootID)))
		}
		if errID != nil {
			errID = fmt.Errorf("boot ID: %w", errID)
		}
	})
	wg.Go(func() {
		peer.MachineType, errMachine = node.MachineType(ctx)
		if errMachine == nil && !knownMachineType(peer.MachineType) {
			errMachine = fmt.Errorf("unknown machine type %q", clip([]byte(peer.MachineType)))
		}
		if errMachine != nil {
			errMachine = fmt.Errorf("machine type: %w", errMachine)
		}
	})
	wg.Wait()
	if err := errors.Join(errTime, errID, errMachine); err != nil {
		return Peer{}, err
	}
	peer.Node = node
	return peer, nil
}

func knownMachineType(t transport.MachineType) bool {
	switch t {
	case transport.MachineTypeControlPlane, transport.MachineTypeInit, transport.MachineTypeWorker:
		return true
	}
	return false
}

// validBootID accepts the kernel's rendering of a random UUID
// (8-4-4-4-12 lower-case hex digits).
func validBootID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, c := range s {
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
