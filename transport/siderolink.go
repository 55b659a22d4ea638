package transport

import (
	"context"
	"fmt"

	"github.com/cosi-project/runtime/pkg/safe"
	"github.com/cosi-project/runtime/pkg/state"
	"github.com/siderolabs/talos/pkg/machinery/resources/siderolink"
)

// SideroLinkReader reads whether Talos connects a node to Omni.
type SideroLinkReader interface {
	// SideroLinkEndpoint is the APIEndpoint of the COSI SiderolinkConfigs
	// resource (namespace config, id siderolink), which Talos writes from a
	// SideroLinkConfig document or the siderolink.api kernel argument:
	// "" when the node has none. It wraps ErrUnsupported when the apid
	// serves no COSI. The endpoint may carry Omni's join token.
	SideroLinkEndpoint(ctx context.Context) (string, error)
}

// SideroLinkEndpoint implements SideroLinkReader. The resource is
// Sensitive: reading it takes an os:admin certificate.
func (n *grpcNode) SideroLinkEndpoint(ctx context.Context) (string, error) {
	ctx, cancel := n.call(ctx)
	defer cancel()

	res, err := safe.StateGetByID[*siderolink.Config](ctx, n.cosi, siderolink.ConfigID)

	switch {
	case err == nil:
		return res.TypedSpec().APIEndpoint, nil
	case state.IsNotFoundError(err):
		// Talos writes it whenever a SideroLink endpoint is configured.
		return "", nil
	case cosiTypeUnsupported(err):
		return "", n.fail("get siderolink config", fmt.Errorf("%w: %w", ErrUnsupported, err))
	default:
		return "", n.fail("get siderolink config", err)
	}
}

var _ SideroLinkReader = (*grpcNode)(nil)
