package credentials

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jonboulle/clockwork"
	"golang.org/x/sys/unix"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// ConfigFileName is the machine config's name at the root of STATE.
const ConfigFileName = "config.yaml"

// Source yields the credentials the daemon talks to apid with.
type Source interface {
	Load(ctx context.Context) (*Material, error)
}

// Material is what a Source found.
type Material struct {
	// MachineType comes from the machine config (StateSource); it is
	// MachineTypeUnknown when no config was read (TalosconfigSource).
	MachineType transport.MachineType
	// Identity signs or holds the client certificate and the cluster CA.
	Identity transport.Identity
	// Origin says where the credentials came from, for the log.
	Origin string
	// Warnings are problems that do not stop the daemon yet (for example a
	// talosconfig certificate that expires soon). Log them.
	Warnings []string
}

// String is safe to log: Identity prints no key material.
func (m *Material) String() string {
	return fmt.Sprintf("credentials from %s: machine type %q, identity %v", m.Origin, m.MachineType, m.Identity)
}

// MarshalJSON is safe to log for the same reason.
func (m *Material) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		MachineType transport.MachineType `json:"machine_type"`
		Identity    any                   `json:"identity"`
		Origin      string                `json:"origin"`
		Warnings    []string              `json:"warnings,omitempty"`
	}{m.MachineType, m.Identity, m.Origin, m.Warnings})
}

// StateSource reads the machine config from the STATE partition and signs
// client certificates with the machine CA found in it. The zero value uses
// the Talos defaults.
type StateSource struct {
	// Devices are tried in order; default DefaultStateDevices().
	Devices []string
	// MountBase holds the temporary mount points; default DefaultMountBase.
	MountBase string
	// MaxConfigSize caps config.yaml; default DefaultMaxConfigSize.
	MaxConfigSize int64
	// Clock drives certificate validity and renewal; default real clock.
	Clock clockwork.Clock
	// CertTTL is each client certificate's validity; default DefaultCertTTL.
	CertTTL time.Duration
}

// Load finds the STATE filesystem, mounts it read-only for as long as it
// takes to read config.yaml, and returns an Issuer for the machine CA.
//
// Outcomes: a worker config gives ErrWorker (permanent); a config that cannot
// be parsed or whose CA is unusable gives a permanent error; a missing
// device, a failed mount or a missing config.yaml (Talos may still be
// booting or writing it) gives a retryable error naming every device tried.
func (s StateSource) Load(ctx context.Context) (*Material, error) {
	devices := s.Devices
	if len(devices) == 0 {
		devices = DefaultStateDevices()
	}

	base := s.MountBase
	if base == "" {
		base = DefaultMountBase
	}

	limit := s.MaxConfigSize
	if limit <= 0 {
		limit = DefaultMaxConfigSize
	}

	attempts := make([]deviceAttempt, 0, len(devices))

	for _, path := range devices {
		device, err := probeXFS(path)
		if err != nil {
			attempts = append(attempts, deviceAttempt{path: path, reason: err.Error()})

			continue
		}

		cfg, shared, err := readMachineConfig(ctx, device, base, limit)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
				err = errors.Join(ctxErr, err)
			}

			if ctx.Err() != nil {
				return nil, fmt.Errorf("read machine config from %s: %w", path, err)
			}

			if isPermanent(err) {
				return nil, backoff.Permanent(fmt.Errorf("STATE %s: %w", path, err))
			}

			attempts = append(attempts, deviceAttempt{path: path, reason: err.Error()})

			continue
		}

		issuer, err := NewIssuer(cfg.issuingCA, s.Clock, s.CertTTL)
		if err != nil {
			return nil, backoff.Permanent(fmt.Errorf("STATE %s: %w", path, err))
		}

		if err := issuer.addTrusted(cfg.acceptedCAs); err != nil {
			return nil, backoff.Permanent(fmt.Errorf("STATE %s: %w", path, err))
		}

		origin := fmt.Sprintf("STATE %s (%s)", path, device)
		if shared {
			origin += ", shared with Talos's read-write mount"
		}

		return &Material{MachineType: cfg.machineType, Identity: issuer, Origin: origin}, nil
	}

	return nil, fmt.Errorf("no usable STATE filesystem; tried %s", describeAttempts(attempts))
}

// readMachineConfig mounts device, reads and parses config.yaml, and unmounts.
func readMachineConfig(ctx context.Context, device, base string, limit int64) (machineConfig, bool, error) {
	var cfg machineConfig

	shared, err := withStateMounted(ctx, device, base, func(root string) error {
		data, err := readCapped(filepath.Join(root, ConfigFileName), limit, unix.O_NOFOLLOW)
		if err != nil {
			// Missing (Talos may not have written it yet) and I/O errors stay
			// retryable; readCapped marks size and file-type errors permanent.
			return fmt.Errorf("read %s: %w", ConfigFileName, err)
		}
		defer clear(data) // the config holds every cluster secret

		cfg, err = parseMachineConfig(data)

		return err
	})

	return cfg, shared, err
}

func isPermanent(err error) bool {
	var perm *backoff.PermanentError

	return errors.As(err, &perm)
}
