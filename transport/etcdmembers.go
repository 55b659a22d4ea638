package transport

import (
	"context"
	"fmt"

	"github.com/siderolabs/talos/pkg/machinery/api/machine"
)

// EtcdMember is one member of the etcd cluster a node's etcd belongs to.
type EtcdMember struct {
	ID       uint64
	Hostname string
}

// EtcdMemberLister reads the member list of a node's local etcd with the
// members' ids. apid names no cluster id: two nodes whose lists share no
// member id run two separate etcd clusters (the status command's SPLIT).
type EtcdMemberLister interface {
	// EtcdMemberList is EtcdMemberList{QueryLocal: true}. A reply without
	// member ids (only legacy names) wraps ErrUnsupported.
	EtcdMemberList(ctx context.Context) ([]EtcdMember, error)
}

// EtcdMemberList implements EtcdMemberLister.
func (n *grpcNode) EtcdMemberList(ctx context.Context) ([]EtcdMember, error) {
	msg, err := n.etcdMemberList(ctx)
	if err != nil {
		return nil, err
	}

	if len(msg.GetMembers()) == 0 && len(msg.GetLegacyMembers()) > 0 {
		return nil, n.fail("etcd member list", fmt.Errorf("%w: only legacy member names, no ids", ErrUnsupported))
	}

	out := make([]EtcdMember, 0, len(msg.GetMembers()))
	for _, m := range msg.GetMembers() {
		out = append(out, EtcdMember{ID: m.GetId(), Hostname: m.GetHostname()})
	}

	return out, nil
}

// etcdMemberList asks the node's local etcd for its members.
func (n *grpcNode) etcdMemberList(ctx context.Context) (*machine.EtcdMembers, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()

	resp, err := n.machine.EtcdMemberList(ctx, &machine.EtcdMemberListRequest{QueryLocal: true})
	if err != nil {
		return nil, n.fail("etcd member list", err)
	}

	msg, err := first(resp.GetMessages())
	if err != nil {
		return nil, n.fail("etcd member list", err)
	}

	return msg, nil
}

var _ EtcdMemberLister = (*grpcNode)(nil)
