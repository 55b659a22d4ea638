// Package fakeapid is a fake Talos apid for tests and demos: the real
// generated MachineService (and optionally COSI State) served over real gRPC
// and mutual TLS, answering with the codes and messages of Talos's machined
// and apid (siderolabs/talos v1.13.9 unless noted), and sharing an etcd world
// with other fake nodes through a Registry.
package fakeapid

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	"github.com/siderolabs/talos/pkg/machinery/role"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// Config is where a fake node lives.
type Config struct {
	// PKI is the cluster whose CA signs the server certificate and the
	// accepted client certificates. Required.
	PKI *PKI
	// Registry is the shared etcd world; default: a private in-memory one.
	Registry *Registry
	// Listen addresses ("ip:port"); default the node IP on a free port.
	Listen []string
	// OnCall observes every served call (for example to log it).
	OnCall func(Call)
}

// Call is one RPC a node received.
type Call struct {
	Method string    `json:"method"` // full gRPC method, e.g. machine.MachineService_Bootstrap_FullMethodName
	Time   time.Time `json:"time"`
	Code   string    `json:"code"` // gRPC code of the answer
	Error  string    `json:"error,omitempty"`
	Roles  []string  `json:"roles"` // roles of the client certificate
	Node   string    `json:"node"`  // IP of the node that served it
}

// Server is one running fake node.
type Server struct {
	node     Node
	pki      *PKI
	registry *Registry
	onCall   func(Call)
	started  time.Time
	tempRoot bool
	addrs    []netip.AddrPort
	grpc     *grpc.Server

	listening chan struct{}
	serveErr  chan error
	cancel    context.CancelFunc

	mu             sync.Mutex
	calls          []Call
	bootstrapCalls int
}

// Start runs a fake node. With Node.StartDelay the listeners open later
// (their ports are reserved now).
func Start(cfg Config, node Node) (*Server, error) {
	if cfg.PKI == nil {
		return nil, errors.New("fake apid needs a PKI")
	}

	start := time.Now()
	if err := node.setDefaults(start); err != nil {
		return nil, err
	}

	if node.NodeID == "" {
		node.NodeID = derivedNodeID(cfg.PKI.Fingerprint(), node.IP)
	}

	s := &Server{
		node:      node,
		pki:       cfg.PKI,
		registry:  cfg.Registry,
		onCall:    cfg.OnCall,
		started:   start,
		listening: make(chan struct{}),
		serveErr:  make(chan error, len(cfg.Listen)+1),
	}

	if s.registry == nil {
		s.registry = NewRegistry()
	}

	if err := s.prepareFiles(); err != nil {
		return nil, err
	}

	listen := cfg.Listen
	if len(listen) == 0 {
		listen = []string{netip.AddrPortFrom(node.IP, 0).String()}
	}

	listeners, err := s.bind(listen, node.StartDelay == 0 && node.StartGate == nil)
	if err != nil {
		s.removeTempRoot()

		return nil, err
	}

	s.node.DiscoveryAddrs = discoveryAddrs(s.node, s.addrs)

	if err := s.registry.update(func(st *registryState) error {
		st.register(s.record())

		return nil
	}); err != nil {
		closeAll(listeners)
		s.removeTempRoot()

		return nil, fmt.Errorf("register fake node %s: %w", node.IP, err)
	}

	s.grpc, err = s.newGRPCServer()
	if err != nil {
		closeAll(listeners)
		s.removeTempRoot()

		return nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel

	go s.serve(ctx, listen, listeners)

	return s, nil
}

func (s *Server) record() nodeRecord {
	return nodeRecord{
		IP:            s.node.IP.String(),
		Name:          s.node.Hostname,
		CA:            s.pki.Fingerprint(),
		ControlPlane:  s.node.MachineType.IsControlPlane(),
		StartedAt:     s.started,
		JoinDelay:     s.node.JoinDelay,
		DataFillDelay: s.node.DataFillDelay,
		HealthyDelay:  s.node.HealthyDelay,

		NodeID:            s.node.NodeID,
		MachineType:       string(s.node.MachineType),
		TalosVersion:      s.node.TalosVersion,
		Addrs:             slices.Clone(s.node.DiscoveryAddrs),
		DiscoveryDisabled: s.node.DiscoveryDisabled,
	}
}

// bind opens the listeners now (keep) or reserves their ports only.
func (s *Server) bind(listen []string, keep bool) ([]net.Listener, error) {
	var listeners []net.Listener

	for _, a := range listen {
		l, err := net.Listen("tcp", a)
		if err != nil {
			closeAll(listeners)

			return nil, fmt.Errorf("listen on %s: %w", a, err)
		}

		ap, err := netip.ParseAddrPort(l.Addr().String())
		if err != nil {
			closeAll(append(listeners, l))

			return nil, fmt.Errorf("listen on %s: %w", a, err)
		}

		s.addrs = append(s.addrs, ap)
		listeners = append(listeners, l)
	}

	if keep {
		return listeners, nil
	}

	closeAll(listeners)

	return nil, nil
}

func (s *Server) serve(ctx context.Context, listen []string, listeners []net.Listener) {
	if listeners == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(s.node.StartDelay):
		}

		if s.node.StartGate != nil {
			select {
			case <-ctx.Done():
				return
			case <-s.node.StartGate:
			}
		}

		for _, ap := range s.addrs {
			l, err := net.Listen("tcp", ap.String())
			if err != nil {
				closeAll(listeners)
				s.serveErr <- fmt.Errorf("late listen on %s (asked %v): %w", ap, listen, err)

				return
			}

			listeners = append(listeners, l)
		}
	}

	close(s.listening)

	if s.node.MachineType == transport.MachineTypeInit {
		go s.foundAsInit(ctx)
	}

	for _, l := range listeners {
		go func() {
			if err := s.grpc.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				s.serveErr <- err
			}
		}()
	}
}

// foundAsInit is an init node's etcd founding the cluster by itself.
func (s *Server) foundAsInit(ctx context.Context) {
	if !s.sleep(ctx, s.node.InitFoundAfter) {
		return
	}

	if err := s.registry.update(func(st *registryState) error {
		self, ok := st.node(s.node.IP.String(), s.pki.Fingerprint())
		if !ok {
			return fmt.Errorf("node %s is not in the registry", s.node.IP)
		}

		// Data from an earlier start: etcd starts from it, founding nothing.
		if now := time.Now(); st.etcdOf(self, now).ClusterID == 0 {
			st.createCluster(self, now)
		}

		return nil
	}); err != nil {
		s.serveErr <- fmt.Errorf("init node founding etcd: %w", err)
	}
}

func closeAll(ls []net.Listener) {
	for _, l := range ls {
		l.Close() //nolint:errcheck
	}
}

// Listening is closed once the listeners are open.
func (s *Server) Listening() <-chan struct{} { return s.listening }

// Err reports a serving failure (nil when none happened yet).
func (s *Server) Err() error {
	select {
	case err := <-s.serveErr:
		return err
	default:
		return nil
	}
}

// Addrs are the addresses served, in Config.Listen order.
func (s *Server) Addrs() []netip.AddrPort { return slices.Clone(s.addrs) }

// Addr is the first served address.
func (s *Server) Addr() netip.AddrPort { return s.addrs[0] }

// Node is the node's effective configuration (defaults filled in).
func (s *Server) Node() Node { return s.node }

// FilesRoot is the directory Read and List serve.
func (s *Server) FilesRoot() string { return s.node.FilesRoot }

// Calls returns every call received so far, in order.
func (s *Server) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()

	return slices.Clone(s.calls)
}

// Methods returns the full method names of the calls received, in order.
func (s *Server) Methods() []string {
	calls := s.Calls()
	out := make([]string, len(calls))

	for i, c := range calls {
		out[i] = c.Method
	}

	return out
}

// CallCount counts calls of one full method name.
func (s *Server) CallCount(method string) int {
	n := 0

	for _, c := range s.Calls() {
		if c.Method == method {
			n++
		}
	}

	return n
}

// Close stops serving at once (open calls are cut), removes a temporary
// files root and marks the node stopped in the registry, so that other
// nodes' discovery drops it (or keeps it for their DiscoveryTTL).
func (s *Server) Close() error {
	s.cancel()
	s.grpc.Stop()
	s.removeTempRoot()

	if err := s.registry.update(func(st *registryState) error {
		st.stop(s.node.IP.String(), s.pki.Fingerprint(), s.started, time.Now())

		return nil
	}); err != nil {
		return fmt.Errorf("mark fake node %s stopped: %w", s.node.IP, err)
	}

	return nil
}

func (s *Server) removeTempRoot() {
	if s.tempRoot {
		os.RemoveAll(s.node.FilesRoot) //nolint:errcheck
	}
}

// prepareFiles lays out the node's filesystem: boot_id, and on
// control-plane nodes the (empty) etcd data dir that Talos mounts before
// etcd starts. Workers have no /var/lib/etcd.
func (s *Server) prepareFiles() error {
	if s.node.FilesRoot == "" {
		dir, err := os.MkdirTemp("", "fakeapid-"+s.node.Hostname+"-")
		if err != nil {
			return fmt.Errorf("create files root: %w", err)
		}

		s.node.FilesRoot = dir
		s.tempRoot = true
	}

	bootID := s.hostPath(transport.BootIDPath)
	if err := os.MkdirAll(filepath.Dir(bootID), 0o755); err != nil {
		return fmt.Errorf("create files root: %w", err)
	}

	if err := os.WriteFile(bootID, []byte(s.node.BootID+"\n"), 0o444); err != nil { //nolint:gosec // world-readable like procfs
		// a read-only file from a previous run
		if os.Remove(bootID) != nil || os.WriteFile(bootID, []byte(s.node.BootID+"\n"), 0o444) != nil { //nolint:gosec
			return fmt.Errorf("write boot_id: %w", err)
		}
	}

	if s.node.MachineType.IsControlPlane() {
		if err := os.MkdirAll(s.hostPath(transport.EtcdDataDir), 0o700); err != nil {
			return fmt.Errorf("create etcd data dir: %w", err)
		}
	}

	return nil
}

// hostPath maps a node path to the files root; ".." cannot climb out.
func (s *Server) hostPath(nodePath string) string {
	return filepath.Join(s.node.FilesRoot, filepath.Clean("/"+nodePath))
}

func (s *Server) newGRPCServer() (*grpc.Server, error) {
	cert, err := s.pki.ServerCertificate(s.node.IP)
	if err != nil {
		return nil, err
	}

	tlsConfig := &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    s.pki.CertPool(),
		MinVersion:   tls.VersionTLS12,
		// apid (internal/app/apid/service.go) sets
		// serverTLSConfig.VerifyPeerCertificate = verifyExtKeyUsage.
		VerifyPeerCertificate: verifyExtKeyUsage,
	}

	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConfig)),
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		// Unregistered services (COSI when switched off) still pass the
		// interceptors, so they are authorized and recorded like apid's
		// proxied calls; the text is grpc-go's own.
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			method, _ := grpc.MethodFromServerStream(stream)

			return status.Errorf(codes.Unimplemented, "unknown service %s", strings.TrimPrefix(path.Dir(method), "/"))
		}),
	)

	machine.RegisterMachineServiceServer(srv, &machineService{s: s})

	if !s.node.COSIUnimplemented {
		cosiv1alpha1.RegisterStateServer(srv, &cosiState{s: s})
	}

	return srv, nil
}

// verifyExtKeyUsage is apid's check (internal/app/apid/service.go): every
// non-CA certificate of the verified chain must have ExtKeyUsage exactly
// [ClientAuth]; error "certificate %q is missing the client auth extended
// key usage".
func verifyExtKeyUsage(_ [][]byte, verifiedChains [][]*x509.Certificate) error {
	if len(verifiedChains) == 0 {
		return errors.New("no verified chains")
	}

	for _, cert := range verifiedChains[0] {
		if cert.IsCA {
			continue
		}

		if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
			return fmt.Errorf("certificate %q is missing the client auth extended key usage", cert.Subject)
		}
	}

	return nil
}

// rules are machined's authorization rules for the methods served here
// (internal/app/machined/pkg/system/services/machined.go); unlisted methods
// fall back to os:admin like machined's FallbackRoles.
var rules = map[string]role.Set{
	machine.MachineService_Bootstrap_FullMethodName:      role.MakeSet(role.Admin),
	machine.MachineService_Read_FullMethodName:           role.MakeSet(role.Admin),
	machine.MachineService_List_FullMethodName:           role.MakeSet(role.Admin, role.Operator, role.Reader),
	machine.MachineService_SystemStat_FullMethodName:     role.MakeSet(role.Admin, role.Operator, role.Reader),
	machine.MachineService_ServiceList_FullMethodName:    role.MakeSet(role.Admin, role.Operator, role.Reader),
	machine.MachineService_EtcdMemberList_FullMethodName: role.MakeSet(role.Admin, role.Operator, role.Reader, role.EtcdBackup),
	machine.MachineService_Version_FullMethodName:        role.MakeSet(role.Admin, role.Operator, role.Reader),
	cosiv1alpha1.State_Get_FullMethodName:                role.MakeSet(role.Admin, role.Operator, role.Reader),
	cosiv1alpha1.State_List_FullMethodName:               role.MakeSet(role.Admin, role.Operator, role.Reader),
}

var fallbackRoles = role.MakeSet(role.Admin)

// errNotAuthorized is pkg/grpc/middleware/authz.ErrNotAuthorized.
var errNotAuthorized = status.Error(codes.PermissionDenied, "not authorized")

// authorize mirrors apid's authz.Injector (roles from the client
// certificate's Subject.O, role.Parse) and machined's authz.Authorizer.
func authorize(ctx context.Context, method string) (role.Set, error) {
	roles, ok := peerRoles(ctx)
	if !ok {
		return roles, errNotAuthorized
	}

	allowed, found := rules[method]
	if !found {
		allowed = fallbackRoles
	}

	if !allowed.IncludesAny(roles) {
		return roles, errNotAuthorized
	}

	return roles, nil
}

// peerRoles are the roles of the client certificate (apid's authz.Injector);
// false without a verified client certificate.
func peerRoles(ctx context.Context) (role.Set, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return role.MakeSet(), false
	}

	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		return role.MakeSet(), false
	}

	roles, _ := role.Parse(info.State.PeerCertificates[0].Subject.Organization)

	return roles, true
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	roles, err := authorize(ctx, info.FullMethod)

	var resp any
	if err == nil {
		resp, err = handler(ctx, req)
	}

	s.recordCall(info.FullMethod, roles, err)

	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	roles, err := authorize(ss.Context(), info.FullMethod)
	if err == nil {
		err = handler(srv, ss)
	}

	s.recordCall(info.FullMethod, roles, err)

	return err
}

func (s *Server) recordCall(method string, roles role.Set, err error) {
	c := Call{
		Method: method,
		Time:   time.Now(),
		Code:   status.Code(err).String(),
		Roles:  roles.Strings(),
		Node:   s.node.IP.String(),
	}

	if err != nil {
		c.Error = status.Convert(err).Message()
	}

	s.mu.Lock()
	s.calls = append(s.calls, c)
	s.mu.Unlock()

	if s.onCall != nil {
		s.onCall(c)
	}
}

// callCount is the number of calls answered so far (for time sync after N
// calls); the call in progress is not counted.
func (s *Server) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()

	return len(s.calls)
}

// Fleet starts fake nodes of one cluster on distinct loopback addresses
// (Linux routes all of 127.0.0.0/8 to lo), sharing a PKI and a Registry.
type Fleet struct {
	PKI      *PKI
	Registry *Registry

	mu      sync.Mutex
	next    netip.Addr
	servers []*Server
}

// NewFleet hands out addresses from first upwards.
func NewFleet(pki *PKI, reg *Registry, first netip.Addr) *Fleet {
	return &Fleet{PKI: pki, Registry: reg, next: first}
}

// NextIP is a loopback address no node of this fleet uses.
func (f *Fleet) NextIP() netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()

	ip := f.next
	f.next = f.next.Next()

	return ip
}

// Start runs node (on NextIP when node.IP is unset) on a free port.
func (f *Fleet) Start(node Node) (*Server, error) {
	if !node.IP.IsValid() {
		node.IP = f.NextIP()
	}

	srv, err := Start(Config{PKI: f.PKI, Registry: f.Registry}, node)
	if err != nil {
		return nil, err
	}

	f.mu.Lock()
	f.servers = append(f.servers, srv)
	f.mu.Unlock()

	return srv, nil
}

// Close stops every node started by the fleet.
func (f *Fleet) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()

	for _, s := range f.servers {
		s.Close() //nolint:errcheck
	}

	f.servers = nil

	return nil
}
