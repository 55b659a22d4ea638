package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/state"
	cosiclient "github.com/cosi-project/runtime/pkg/state/protobuf/client"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/emptypb"
)

// Default deadlines, applied when the caller's context has none.
const (
	// DefaultCallTimeout bounds every RPC but Bootstrap.
	DefaultCallTimeout = 5 * time.Second
	// DefaultBootstrapTimeout must exceed the 5 s Talos spends waiting for
	// time sync before it answers "time is not in sync yet"; a shorter
	// deadline would turn that answer into DeadlineExceeded.
	DefaultBootstrapTimeout = 15 * time.Second
	// DefaultDialTimeout bounds Dial.
	DefaultDialTimeout = 5 * time.Second
)

// DialerOption configures NewDialer.
type DialerOption func(*dialer)

// WithCallTimeout sets the default deadline of every RPC but Bootstrap.
func WithCallTimeout(d time.Duration) DialerOption {
	return func(o *dialer) { o.callTimeout = d }
}

// WithBootstrapTimeout sets the default deadline of Bootstrap.
func WithBootstrapTimeout(d time.Duration) DialerOption {
	return func(o *dialer) { o.bootstrapTimeout = d }
}

// WithDialTimeout sets the default deadline of Dial.
func WithDialTimeout(d time.Duration) DialerOption {
	return func(o *dialer) { o.dialTimeout = d }
}

// WithGRPCOptions appends gRPC dial options (for example a custom context
// dialer that binds a source address).
func WithGRPCOptions(opts ...grpc.DialOption) DialerOption {
	return func(o *dialer) { o.grpcOpts = append(o.grpcOpts, opts...) }
}

type dialer struct {
	id               Identity
	callTimeout      time.Duration
	bootstrapTimeout time.Duration
	dialTimeout      time.Duration
	grpcOpts         []grpc.DialOption
}

// NewDialer returns a Dialer that reaches apid over mutual TLS with id.
func NewDialer(id Identity, opts ...DialerOption) Dialer {
	d := &dialer{
		id:               id,
		callTimeout:      DefaultCallTimeout,
		bootstrapTimeout: DefaultBootstrapTimeout,
		dialTimeout:      DefaultDialTimeout,
	}

	for _, o := range opts {
		o(d)
	}

	return d
}

// Dial connects to apid at addr and waits until the connection is ready, so
// that a refused connection or a foreign certificate is reported here, with
// the cause (IsCertificateRejected works on the returned error).
func (d *dialer) Dial(ctx context.Context, addr netip.AddrPort) (Node, error) {
	if !addr.IsValid() {
		return nil, fmt.Errorf("dial apid: invalid address %v", addr)
	}

	ctx, cancel := withDefaultTimeout(ctx, d.dialTimeout)
	defer cancel()

	probe := &connProbe{}

	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(&probedCredentials{TransportCredentials: credentials.NewTLS(TLSConfig(d.id)), probe: probe}),
		grpc.WithContextDialer(func(ctx context.Context, target string) (net.Conn, error) {
			conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
			probe.record(err)

			return conn, err
		}),
	}, d.grpcOpts...)

	// passthrough: the target is an IP literal, never resolved.
	conn, err := grpc.NewClient("passthrough:///"+addr.String(), opts...)
	if err != nil {
		return nil, fmt.Errorf("dial apid %s: %w", addr, err)
	}

	if err := waitReady(ctx, conn, probe); err != nil {
		conn.Close() //nolint:errcheck

		return nil, fmt.Errorf("dial apid %s: %w", addr, err)
	}

	return &grpcNode{
		addr:             addr,
		conn:             conn,
		machine:          machine.NewMachineServiceClient(conn),
		cosi:             state.WrapCore(cosiclient.NewAdapter(cosiv1alpha1.NewStateClient(conn))),
		callTimeout:      d.callTimeout,
		bootstrapTimeout: d.bootstrapTimeout,
	}, nil
}

func waitReady(ctx context.Context, conn *grpc.ClientConn, probe *connProbe) error {
	conn.Connect()

	for {
		s := conn.GetState()

		switch s { //nolint:exhaustive
		case connectivity.Ready:
			return nil
		case connectivity.TransientFailure:
			if err := probe.lastErr(); err != nil {
				return err
			}

			// The TCP and TLS handshakes succeeded but the connection died
			// afterwards: with TLS 1.3 that is how the server rejecting our
			// client certificate shows. A fail-fast RPC reports the
			// connection error gRPC kept; it is never sent.
			err := conn.Invoke(ctx, machine.MachineService_Version_FullMethodName, &emptypb.Empty{}, &machine.VersionResponse{})
			if err == nil {
				continue // became ready meanwhile
			}

			return err
		case connectivity.Shutdown:
			return errors.New("connection shut down")
		}

		if !conn.WaitForStateChange(ctx, s) {
			if err := probe.lastErr(); err != nil {
				return fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
			}

			return ctx.Err()
		}
	}
}

// connProbe keeps the last TCP or TLS handshake error, which gRPC itself only
// logs.
type connProbe struct {
	mu  sync.Mutex
	err error
}

func (p *connProbe) record(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()

	p.err = err
}

func (p *connProbe) lastErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()

	return p.err
}

type probedCredentials struct {
	credentials.TransportCredentials

	probe *connProbe
}

func (c *probedCredentials) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	c.probe.record(err)

	return conn, info, err
}

func (c *probedCredentials) Clone() credentials.TransportCredentials {
	return &probedCredentials{TransportCredentials: c.TransportCredentials.Clone(), probe: c.probe}
}

func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || d <= 0 {
		return context.WithCancel(ctx)
	}

	return context.WithTimeout(ctx, d)
}
