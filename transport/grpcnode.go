package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/api/common"
	"github.com/siderolabs/talos/pkg/machinery/api/machine"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	timeres "github.com/siderolabs/talos/pkg/machinery/resources/time"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// grpcNode is a Node reached directly at its apid. Requests carry no
// node/nodes metadata, so the node's own machined answers them.
type grpcNode struct {
	addr             netip.AddrPort
	conn             *grpc.ClientConn
	machine          machine.MachineServiceClient
	cosi             state.State
	callTimeout      time.Duration
	bootstrapTimeout time.Duration
}

// bootIDMaxSize bounds the read of boot_id: a UUID and a newline.
const bootIDMaxSize = 64

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func (n *grpcNode) Addr() netip.Addr { return n.addr.Addr() }

func (n *grpcNode) Close() error {
	if err := n.conn.Close(); err != nil {
		return fmt.Errorf("close connection to %s: %w", n.addr, err)
	}

	return nil
}

// fail wraps err with the operation and the node, keeping it classifiable
// with status.Code and errors.Is.
func (n *grpcNode) fail(op string, err error) error {
	return fmt.Errorf("%s on %s: %w", op, n.addr.Addr(), err)
}

func (n *grpcNode) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return withDefaultTimeout(ctx, n.callTimeout)
}

// reply is a response message of apid: one per node answering.
type reply interface {
	GetMetadata() *common.Metadata
}

// first returns the single message of a direct call. A per-node error in
// Metadata becomes an error (a gRPC status one when the node sent a status).
func first[M reply](messages []M) (M, error) {
	var zero M

	if len(messages) == 0 {
		return zero, errors.New("reply has no messages")
	}

	if err := metadataError(messages[0].GetMetadata()); err != nil {
		return zero, err
	}

	return messages[0], nil
}

func metadataError(md *common.Metadata) error {
	switch {
	case md == nil:
		return nil
	case md.GetStatus() != nil && md.GetStatus().GetCode() != int32(codes.OK):
		return status.ErrorProto(md.GetStatus())
	case md.GetError() != "":
		return fmt.Errorf("node reported: %s", md.GetError())
	default:
		return nil
	}
}

func (n *grpcNode) BootTime(ctx context.Context) (time.Time, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()

	resp, err := n.machine.SystemStat(ctx, &emptypb.Empty{})
	if err != nil {
		return time.Time{}, n.fail("system stat", err)
	}

	msg, err := first(resp.GetMessages())
	if err != nil {
		return time.Time{}, n.fail("system stat", err)
	}

	if msg.GetBootTime() == 0 {
		return time.Time{}, n.fail("system stat", errors.New("reply has no boot time"))
	}

	return time.Unix(int64(msg.GetBootTime()), 0), nil //nolint:gosec // seconds since 1970 fit
}

func (n *grpcNode) BootID(ctx context.Context) (string, error) {
	data, err := n.ReadFile(ctx, BootIDPath, bootIDMaxSize)
	if err != nil {
		return "", err
	}

	id := strings.TrimSpace(string(data))
	if !uuidPattern.MatchString(id) {
		return "", n.fail("read boot id", fmt.Errorf("%s holds %q, not a UUID", BootIDPath, id))
	}

	return strings.ToLower(id), nil
}

func (n *grpcNode) ReadFile(ctx context.Context, name string, limit int64) ([]byte, error) {
	op := "read " + name

	if limit <= 0 {
		return nil, n.fail(op, fmt.Errorf("invalid size limit %d", limit))
	}

	ctx, cancel := n.call(ctx)
	defer cancel()

	stream, err := n.machine.Read(ctx, &machine.ReadRequest{Path: name})
	if err != nil {
		return nil, n.fail(op, classifyNotFound(err))
	}

	var data []byte

	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return data, nil
		}

		if err != nil {
			return nil, n.fail(op, classifyNotFound(err))
		}

		if err := metadataError(chunk.GetMetadata()); err != nil {
			return nil, n.fail(op, classifyNotFound(err))
		}

		if int64(len(data))+int64(len(chunk.GetBytes())) > limit {
			return nil, n.fail(op, fmt.Errorf("file is larger than %d bytes", limit))
		}

		data = append(data, chunk.GetBytes()...)
	}
}

// classifyNotFound adds ErrNotFound to an answer that says the path does not
// exist, keeping the status.
func classifyNotFound(err error) error {
	if isAbsent(err) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}

	return err
}

// isAbsent: NotFound (Read since v1.8), or the raw stat/lstat error that
// reaches the client as Unknown "...: no such file or directory" (Read on
// v1.7, List on every version).
func isAbsent(err error) bool {
	code := status.Code(err)

	return code == codes.NotFound || (code == codes.Unknown && strings.HasSuffix(status.Convert(err).Message(), enoent))
}

func (n *grpcNode) MachineType(ctx context.Context) (MachineType, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()

	res, err := safe.StateGetByID[*configres.MachineType](ctx, n.cosi, configres.MachineTypeID)
	if err == nil {
		t, parseErr := parseMachineType(res.MachineType().String())
		if parseErr != nil {
			return MachineTypeUnknown, n.fail("get machine type", parseErr)
		}

		return t, nil
	}

	if ctx.Err() != nil || (!cosiTypeUnsupported(err) && !state.IsNotFoundError(err)) {
		// A lost reply or a refusal tells nothing: guessing from the
		// service list could take a control-plane node whose services have
		// not started (a bootstrapped one, just rebooted) for a worker.
		return MachineTypeUnknown, n.fail("get machine type", err)
	}

	// No COSI through this apid, or no such resource type or resource: the
	// etcd service exists on control-plane nodes only. init is reported as
	// controlplane here.
	svc, svcErr := n.EtcdService(ctx)
	if svcErr != nil {
		return MachineTypeUnknown, fmt.Errorf("machine type without COSI (%w): %w", err, svcErr)
	}

	if svc.Found {
		return MachineTypeControlPlane, nil
	}

	return MachineTypeWorker, nil
}

func parseMachineType(s string) (MachineType, error) {
	switch t := MachineType(s); t {
	case MachineTypeInit, MachineTypeControlPlane, MachineTypeWorker:
		return t, nil
	default:
		return MachineTypeUnknown, fmt.Errorf("unknown machine type %q", s)
	}
}

func (n *grpcNode) EtcdService(ctx context.Context) (ServiceState, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()

	resp, err := n.machine.ServiceList(ctx, &emptypb.Empty{})
	if err != nil {
		return ServiceState{}, n.fail("service list", err)
	}

	msg, err := first(resp.GetMessages())
	if err != nil {
		return ServiceState{}, n.fail("service list", err)
	}

	for _, svc := range msg.GetServices() {
		if svc.GetId() == "etcd" {
			st := ServiceState{Found: true, State: svc.GetState(), Healthy: svc.GetHealth().GetHealthy()}
			if events := svc.GetEvents().GetEvents(); len(events) > 0 {
				st.Message = events[len(events)-1].GetMsg()
			}

			return st, nil
		}
	}

	return ServiceState{}, nil
}

func (n *grpcNode) EtcdMembers(ctx context.Context) ([]string, error) {
	msg, err := n.etcdMemberList(ctx)
	if err != nil {
		return nil, err
	}

	if len(msg.GetMembers()) == 0 {
		return msg.GetLegacyMembers(), nil
	}

	names := make([]string, 0, len(msg.GetMembers()))
	for _, m := range msg.GetMembers() {
		names = append(names, m.GetHostname())
	}

	return names, nil
}

// enoent is how Talos reports a missing List root: machined returns the
// plain error of os.Lstat ("lstat /var/lib/etcd: no such file or
// directory"), which gRPC sends as Unknown, not NotFound.
const enoent = "no such file or directory"

func (n *grpcNode) EtcdDataDirEmpty(ctx context.Context) (bool, error) {
	const op = "list " + EtcdDataDir

	ctx, cancel := n.call(ctx)
	defer cancel()

	stream, err := n.machine.List(ctx, &machine.ListRequest{Root: EtcdDataDir, Recurse: true, RecursionDepth: 1})
	if err != nil {
		if isAbsent(err) {
			// Absent is not empty: before /var is mounted Talos answers this
			// on a bootstrapped node too (EtcdSigns marks it DataDirUnproven).
			return false, n.fail(op, classifyNotFound(err))
		}

		return false, n.fail(op, err)
	}

	root := path.Clean(EtcdDataDir)

	for {
		fi, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return true, nil
		}

		if err != nil {
			if isAbsent(err) {
				return false, n.fail(op, classifyNotFound(err))
			}

			return false, n.fail(op, err)
		}

		if err := metadataError(fi.GetMetadata()); err != nil {
			return false, n.fail(op, err)
		}

		isRoot := fi.GetRelativeName() == "." || path.Clean(fi.GetName()) == root
		if isRoot && fi.GetError() != "" {
			// The directory itself could not be read (EIO on a damaged
			// filesystem): Talos sends that as the root's entry, without
			// RelativeName, and ends the stream cleanly. Not empty: unknown.
			return false, n.fail(op, fmt.Errorf("%s: %s", fi.GetName(), fi.GetError()))
		}

		if isRoot {
			continue
		}

		// Any entry, even one the node failed to stat, means etcd has
		// written there.
		return false, nil
	}
}

func (n *grpcNode) TimeSynced(ctx context.Context) (bool, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()

	res, err := safe.StateGetByID[*timeres.Status](ctx, n.cosi, timeres.StatusID)
	if err != nil {
		// NotFound is an apid that does not publish it: machined's time
		// controller writes the status once the config is loaded, long
		// before extensions start, so a running Talos always has one.
		if cosiTypeUnsupported(err) || state.IsNotFoundError(err) {
			return false, n.fail("get time status", fmt.Errorf("%w: %w", ErrUnsupported, err))
		}

		return false, n.fail("get time status", err)
	}

	return res.TypedSpec().Synced, nil
}

func (n *grpcNode) Bootstrap(ctx context.Context) error {
	ctx, cancel := withDefaultTimeout(ctx, n.bootstrapTimeout)
	defer cancel()

	resp, err := n.machine.Bootstrap(ctx, &machine.BootstrapRequest{})
	if err != nil {
		return n.fail("bootstrap", err)
	}

	if _, err := first(resp.GetMessages()); err != nil {
		return n.fail("bootstrap", err)
	}

	return nil
}
