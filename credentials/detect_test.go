package credentials

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

type waitResult struct {
	present bool
	err     error
}

func startWait(ctx context.Context, d ControlPlaneDetector) <-chan waitResult {
	done := make(chan waitResult, 1)

	go func() {
		present, err := d.Wait(ctx)
		done <- waitResult{present, err}
	}()

	return done
}

// advanceUntilDone moves the fake clock one poll at a time (waiting for the
// detector to block on its timer each time) until Wait returns.
func advanceUntilDone(t *testing.T, clock *clockwork.FakeClock, step time.Duration, done <-chan waitResult, beforeStep func(elapsed time.Duration)) (waitResult, time.Duration) {
	t.Helper()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	start := clock.Now()

	for {
		select {
		case r := <-done:
			return r, clock.Since(start)
		default:
		}

		blocked := make(chan error, 1)
		go func() { blocked <- clock.BlockUntilContext(ctx, 1) }()

		select {
		case r := <-done:
			return r, clock.Since(start)
		case err := <-blocked:
			if err != nil {
				t.Fatal("detector neither returned nor waited on the clock")
			}
		}

		if beforeStep != nil {
			beforeStep(clock.Since(start))
		}

		clock.Advance(step)
	}
}

func TestDetectPresentAnswersAtOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}

	// A fake clock nobody advances: any wait would hang the test.
	present, err := ControlPlaneDetector{Dir: dir, Clock: clockwork.NewFakeClock()}.Wait(context.Background())
	if err != nil || !present {
		t.Fatalf("present = %v, err = %v; want true", present, err)
	}
}

func TestDetectDirectoryAppearsDuringGrace(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	clock := clockwork.NewFakeClock()

	done := startWait(context.Background(), ControlPlaneDetector{Dir: dir, Clock: clock, Grace: time.Minute, Interval: time.Second})

	r, elapsed := advanceUntilDone(t, clock, time.Second, done, func(elapsed time.Duration) {
		if elapsed == 20*time.Second {
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Error(err)
			}
		}
	})

	if r.err != nil || !r.present {
		t.Fatalf("present = %v, err = %v; want true", r.present, r.err)
	}

	if elapsed < 20*time.Second || elapsed > 22*time.Second {
		t.Errorf("answered after %s, want right after the directory appeared at 20s", elapsed)
	}
}

func TestDetectAbsentAfterGrace(t *testing.T) {
	clock := clockwork.NewFakeClock()

	done := startWait(context.Background(), ControlPlaneDetector{Dir: filepath.Join(t.TempDir(), "etcd"), Clock: clock})

	r, elapsed := advanceUntilDone(t, clock, 700*time.Millisecond, done, nil)
	if r.err != nil || r.present {
		t.Fatalf("present = %v, err = %v; want false", r.present, r.err)
	}

	if elapsed < DefaultDetectGrace || elapsed > DefaultDetectGrace+time.Second {
		t.Errorf("gave up after %s, want the default grace %s", elapsed, DefaultDetectGrace)
	}
}

func TestDetectHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clock := clockwork.NewFakeClock()

	done := startWait(ctx, ControlPlaneDetector{Dir: filepath.Join(t.TempDir(), "etcd"), Clock: clock})

	if err := clock.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}

	cancel()

	select {
	case r := <-done:
		if !errors.Is(r.err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait ignored the cancelled context")
	}
}

func TestDetectNotADirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etcd")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	_, err := ControlPlaneDetector{Dir: path, Clock: clockwork.NewFakeClock()}.Wait(context.Background())
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("err = %v, want an error naming %s", err, path)
	}
}
