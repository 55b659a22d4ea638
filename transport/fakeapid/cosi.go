package fakeapid

import (
	"context"
	"fmt"

	cosiv1alpha1 "github.com/cosi-project/runtime/api/v1alpha1"
	"github.com/cosi-project/runtime/pkg/resource"
	"github.com/cosi-project/runtime/pkg/resource/protobuf"
	machinetype "github.com/siderolabs/talos/pkg/machinery/config/machine"
	configres "github.com/siderolabs/talos/pkg/machinery/resources/config"
	timeres "github.com/siderolabs/talos/pkg/machinery/resources/time"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// cosiState serves COSI State Get for the two resources the daemon reads,
// marshalled as machined's COSI API marshals them
// (cosi-project/runtime pkg/state/protobuf/server).
type cosiState struct {
	cosiv1alpha1.UnimplementedStateServer

	s *Server
}

func (c *cosiState) Get(_ context.Context, req *cosiv1alpha1.GetRequest) (*cosiv1alpha1.GetResponse, error) {
	var r resource.Resource

	switch {
	case req.GetNamespace() == configres.NamespaceName && req.GetType() == configres.MachineTypeType && req.GetId() == configres.MachineTypeID:
		typ, err := machinetype.ParseType(string(c.s.node.MachineType))
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}

		mt := configres.NewMachineType()
		mt.SetMachineType(typ)
		r = mt
	case req.GetNamespace() == timeres.NewStatus().Metadata().Namespace() && req.GetType() == timeres.StatusType && req.GetId() == timeres.StatusID:
		st := timeres.NewStatus()
		st.TypedSpec().Synced = c.s.timeSynced()
		r = st
	default:
		// the in-memory state's not-found text
		return nil, status.Error(codes.NotFound, fmt.Sprintf("resource %s(%s/%s@undefined) doesn't exist", req.GetType(), req.GetNamespace(), req.GetId()))
	}

	protoR, err := protobuf.FromResource(r)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}

	data, err := protoR.Marshal()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}

	return &cosiv1alpha1.GetResponse{Resource: data}, nil
}
