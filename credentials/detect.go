package credentials

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/jonboulle/clockwork"
)

// DefaultSecretsDir is Talos's secrets directory; the extension gets it
// mounted read-only.
const DefaultSecretsDir = "/system/secrets"

// EtcdSecretsName is the directory below the secrets directory that holds
// the etcd PKI.
const EtcdSecretsName = "etcd"

// DefaultEtcdSecretsDir exists only on control-plane nodes: Talos writes the
// etcd PKI there.
const DefaultEtcdSecretsDir = DefaultSecretsDir + "/" + EtcdSecretsName

// DefaultDetectGrace is how long a missing DefaultEtcdSecretsDir is
// re-checked: Talos may create it slightly after the extension starts.
const DefaultDetectGrace = 60 * time.Second

const defaultDetectInterval = time.Second

// ControlPlaneDetector looks for the etcd secrets directory. The zero value
// uses the defaults and the real clock.
type ControlPlaneDetector struct {
	Dir      string          // default DefaultEtcdSecretsDir
	Grace    time.Duration   // default DefaultDetectGrace
	Interval time.Duration   // re-check period, default 1 s
	Clock    clockwork.Clock // default real clock
}

// Present reports whether the directory exists now, without waiting.
func (d ControlPlaneDetector) Present() (bool, error) {
	dir := d.Dir
	if dir == "" {
		dir = DefaultEtcdSecretsDir
	}

	return dirExists(dir)
}

// Wait reports whether the directory exists. A missing directory is
// re-checked every Interval until Grace has passed; an existing one answers
// at once. Errors other than "does not exist" (and a non-directory at the
// path) are returned, as is ctx's error when it ends the wait.
func (d ControlPlaneDetector) Wait(ctx context.Context) (bool, error) {
	dir := d.Dir
	if dir == "" {
		dir = DefaultEtcdSecretsDir
	}

	grace := d.Grace
	if grace <= 0 {
		grace = DefaultDetectGrace
	}

	interval := d.Interval
	if interval <= 0 {
		interval = defaultDetectInterval
	}

	clock := d.Clock
	if clock == nil {
		clock = clockwork.NewRealClock()
	}

	deadline := clock.Now().Add(grace)

	for {
		present, err := dirExists(dir)
		if err != nil || present {
			return present, err
		}

		remaining := deadline.Sub(clock.Now())
		if remaining <= 0 {
			return false, nil
		}

		timer := clock.NewTimer(min(interval, remaining))

		select {
		case <-ctx.Done():
			timer.Stop()

			return false, fmt.Errorf("wait for %s: %w", dir, ctx.Err())
		case <-timer.Chan():
		}
	}
}

func dirExists(dir string) (bool, error) {
	info, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}

	if err != nil {
		return false, fmt.Errorf("check control-plane marker %s: %w", dir, err)
	}

	if !info.IsDir() {
		return false, fmt.Errorf("control-plane marker %s is not a directory (mode %s)", dir, info.Mode())
	}

	return true, nil
}
