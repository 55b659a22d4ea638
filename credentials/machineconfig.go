package credentials

import (
	"errors"
	"fmt"

	"github.com/cenkalti/backoff/v4"
	"github.com/siderolabs/crypto/x509"
	"github.com/siderolabs/talos/pkg/machinery/config/config"
	"github.com/siderolabs/talos/pkg/machinery/config/configloader"
	"github.com/siderolabs/talos/pkg/machinery/config/machine"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// DefaultMaxConfigSize caps how much of config.yaml is read. Real machine
// configs are tens of kilobytes; anything near this is not a Talos config.
const DefaultMaxConfigSize = 4 << 20

// machineConfig is what the daemon needs from a node's machine config.
type machineConfig struct {
	machineType transport.MachineType
	issuingCA   *x509.PEMEncodedCertificateAndKey
	acceptedCAs []*x509.PEMEncodedCertificate
	// sideroLinkAPI is the apiUrl of a SideroLinkConfig document.
	sideroLinkAPI string
}

// MachineIdentity is the identity StateSource.Load gives a control-plane
// node: the issuer of its machine CA, and what else the daemon must know
// from the same machine config.
type MachineIdentity struct {
	*Issuer

	sideroLinkAPI string
}

// SideroLinkAPI is the apiUrl of the machine config's SideroLinkConfig
// document: the machine connects to Omni (or another SideroLink API). ""
// when the config has none. The URL may carry Omni's join token.
func (m *MachineIdentity) SideroLinkAPI() string { return m.sideroLinkAPI }

// parseMachineConfig parses config.yaml (single v1alpha1 document or a
// multi-document config) with machinery's loader. All failures are
// permanent: the same bytes give the same answer on every retry. A worker
// config is not a failure: it yields only the type, because a worker's
// config carries the CA certificate but not its key (nothing to sign with,
// and Talos refuses Bootstrap on workers anyway).
func parseMachineConfig(data []byte) (machineConfig, error) {
	cfg, err := configloader.NewFromBytes(data)
	if err != nil {
		return machineConfig{}, backoff.Permanent(fmt.Errorf("parse machine config: %w", err))
	}

	m := cfg.Machine()
	if m == nil {
		return machineConfig{}, backoff.Permanent(errors.New("machine config has no v1alpha1 document (no machine section)"))
	}

	mt, err := machineType(m.Type())
	if err != nil {
		return machineConfig{}, backoff.Permanent(err)
	}

	if mt == transport.MachineTypeWorker {
		return machineConfig{machineType: mt}, nil
	}

	ca := m.Security().IssuingCA()
	if ca == nil || len(ca.Crt) == 0 {
		return machineConfig{}, backoff.Permanent(fmt.Errorf("%s machine config has no machine CA certificate (machine.ca.crt)", mt))
	}

	if len(ca.Key) == 0 {
		return machineConfig{}, backoff.Permanent(fmt.Errorf("%s machine config has no machine CA key (machine.ca.key)", mt))
	}

	return machineConfig{
		machineType:   mt,
		issuingCA:     ca,
		acceptedCAs:   m.Security().AcceptedCAs(),
		sideroLinkAPI: sideroLinkAPI(cfg),
	}, nil
}

// sideroLinkAPI reads the SideroLinkConfig document as Talos's siderolink
// ConfigController does: a document without apiUrl connects nowhere.
func sideroLinkAPI(cfg config.Config) string {
	if sl := cfg.SideroLink(); sl != nil && sl.APIUrl() != nil {
		return sl.APIUrl().String()
	}

	return ""
}

// machineType maps machinery's type onto the transport's. Talos itself reads
// an empty or "join" type as worker (machine.ParseType); unknown is refused.
func machineType(t machine.Type) (transport.MachineType, error) {
	switch t { //nolint:exhaustive // the default covers TypeUnknown
	case machine.TypeInit:
		return transport.MachineTypeInit, nil
	case machine.TypeControlPlane:
		return transport.MachineTypeControlPlane, nil
	case machine.TypeWorker:
		return transport.MachineTypeWorker, nil
	default:
		return transport.MachineTypeUnknown, fmt.Errorf("machine config has an unknown machine type (machine.type)")
	}
}
