package credentials

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// ConfigFileName is the machine config's name at the root of STATE.
const ConfigFileName = "config.yaml"

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
	// Log receives which device was read and how (never key material). The
	// zero value discards.
	Log zerolog.Logger
}

// Describe names the source for the log.
func (s StateSource) Describe() string {
	devices := s.Devices
	if len(devices) == 0 {
		devices = DefaultStateDevices()
	}

	return "STATE partition (" + strings.Join(devices, ", ") + ")"
}

// Load finds the STATE filesystem, mounts it read-only for as long as it
// takes to read config.yaml, and returns a MachineIdentity: an Issuer for
// the machine CA, and the config's SideroLink API.
//
// Outcomes: a worker config gives MachineTypeWorker and no identity (a
// worker config has no CA key; the daemon stops cleanly); a config that
// cannot be parsed or whose CA is unusable gives a permanent error; a missing
// device, a failed mount or a missing config.yaml (Talos may still be
// booting or writing it) gives a retryable error naming every device tried.
func (s StateSource) Load(ctx context.Context) (transport.MachineType, transport.Identity, error) {
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

	devices = slices.Clone(devices)

	for i := 0; i < len(devices); i++ {
		path := devices[i]

		device, err := probeXFS(path)
		if err != nil {
			attempts = append(attempts, deviceAttempt{path: path, reason: err.Error()})

			// An encrypted STATE on Talos v1.7–v1.11 is opened under a name
			// derived from its partition: try it too.
			var luks *luksError
			if errors.As(err, &luks) && !slices.Contains(devices, luks.openedAs()) {
				devices = append(devices, luks.openedAs())
			}

			continue
		}

		cfg, shared, err := readMachineConfig(ctx, device, base, limit)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				if !errors.Is(err, ctxErr) {
					err = errors.Join(ctxErr, err)
				}

				return transport.MachineTypeUnknown, nil, fmt.Errorf("read machine config from %s: %w", path, err)
			}

			if isPermanent(err) {
				return transport.MachineTypeUnknown, nil, backoff.Permanent(fmt.Errorf("STATE %s: %w", path, err))
			}

			attempts = append(attempts, deviceAttempt{path: path, reason: err.Error()})

			continue
		}

		s.Log.Debug().Str("device", path).Str("resolved", device).Bool("shared_superblock", shared).
			Str("machine_type", string(cfg.machineType)).Msg("machine config read from STATE")

		if cfg.machineType == transport.MachineTypeWorker {
			return cfg.machineType, nil, nil
		}

		issuer, err := NewIssuer(cfg.issuingCA, s.Clock, s.CertTTL)
		if err != nil {
			return transport.MachineTypeUnknown, nil, backoff.Permanent(fmt.Errorf("STATE %s: %w", path, err))
		}

		if err := issuer.addTrusted(cfg.acceptedCAs); err != nil {
			return transport.MachineTypeUnknown, nil, backoff.Permanent(fmt.Errorf("STATE %s: %w", path, err))
		}

		return cfg.machineType, &MachineIdentity{Issuer: issuer, sideroLinkAPI: cfg.sideroLinkAPI}, nil
	}

	return transport.MachineTypeUnknown, nil, fmt.Errorf("no usable STATE filesystem; tried %s", describeAttempts(attempts))
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
