package fsm

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jonboulle/clockwork"
	"github.com/rs/zerolog"
)

func script(events ...Event) HandlerFunc {
	i := 0

	return func(context.Context) (Event, error) {
		e := events[i]
		i++

		return e, nil
	}
}

func TestMachineRetriesWithBackoffThenContinues(t *testing.T) {
	clock := clockwork.NewFakeClock()
	failures := 3
	calls := 0

	var steps []Step

	m := &Machine{
		Log:        zerolog.New(io.Discard),
		Clock:      clock,
		MaxBackoff: 4 * time.Second,
		OnStep:     func(s Step) { steps = append(steps, s) },
		Handlers: map[State]Handler{
			Detect: HandlerFunc(func(context.Context) (Event, error) {
				calls++
				if calls <= failures {
					return "", errors.New("apid not ready")
				}

				return SecretsMissing, nil
			}),
			Credentials: script(WorkerDetected),
		},
	}

	done := make(chan error, 1)
	go func() { done <- m.Run(t.Context()) }()

	// Each failure arms one backoff timer; advance past the cap each time.
	for range failures {
		if err := clock.BlockUntilContext(t.Context(), 1); err != nil {
			t.Fatal(err)
		}

		clock.Advance(10 * time.Second)
	}

	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	if calls != failures+1 {
		t.Fatalf("handler called %d times, want %d", calls, failures+1)
	}

	if len(steps) != 2 || steps[0] != (Step{From: Detect, To: Credentials, Event: SecretsMissing, Spent: 30 * time.Second}) {
		t.Fatalf("steps = %+v", steps)
	}
}

func TestMachinePermanentErrorStops(t *testing.T) {
	calls := 0
	m := &Machine{
		Log:   zerolog.New(io.Discard),
		Clock: clockwork.NewFakeClock(),
		Handlers: map[State]Handler{
			Detect: HandlerFunc(func(context.Context) (Event, error) {
				calls++

				return "", backoff.Permanent(errors.New("config is corrupt"))
			}),
		},
	}

	err := m.Run(t.Context())
	if err == nil || err.Error() != "state Detect: config is corrupt" || calls != 1 {
		t.Fatalf("err = %v after %d calls", err, calls)
	}
}

func TestMachineUnknownEventIsAnError(t *testing.T) {
	m := &Machine{
		Log:      zerolog.New(io.Discard),
		Clock:    clockwork.NewFakeClock(),
		Handlers: map[State]Handler{Detect: script(Finish)},
	}

	if err := m.Run(t.Context()); err == nil {
		t.Fatal("an event without a row in Detect must fail the run")
	}
}

func TestMachineWalksSelfLoops(t *testing.T) {
	var (
		mu    sync.Mutex
		steps []Event
	)

	m := &Machine{
		Log:   zerolog.New(io.Discard),
		Clock: clockwork.NewFakeClock(),
		OnStep: func(s Step) {
			mu.Lock()
			steps = append(steps, s.Event)
			mu.Unlock()
		},
		Handlers: map[State]Handler{
			Detect:       script(ControlPlaneDetected),
			Credentials:  script(CredentialsReady),
			Connect:      script(Connected),
			Scan:         script(QuorumMissing, QuorumReached),
			Elect:        script(Follow),
			FollowerWait: script(Follow, Follow, Finish),
		},
	}

	if err := m.Run(t.Context()); err != nil {
		t.Fatal(err)
	}

	want := []Event{ControlPlaneDetected, CredentialsReady, Connected, QuorumMissing, QuorumReached, Follow, Follow, Follow, Finish}
	if len(steps) != len(want) {
		t.Fatalf("steps %v, want %v", steps, want)
	}

	for i := range want {
		if steps[i] != want[i] {
			t.Fatalf("steps %v, want %v", steps, want)
		}
	}
}

func TestMachineCancelStopsRetrying(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	clock := clockwork.NewFakeClock()
	m := &Machine{
		Log:   zerolog.New(io.Discard),
		Clock: clock,
		Handlers: map[State]Handler{
			Detect: HandlerFunc(func(context.Context) (Event, error) { return "", errors.New("boom") }),
		},
	}

	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()

	if err := clock.BlockUntilContext(t.Context(), 1); err != nil {
		t.Fatal(err)
	}

	cancel()

	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

// A failing state never waits longer than MaxBackoff, jitter included:
// MAX_BACKOFF is what an operator reads as the longest pause.
func TestRetryWaitNeverExceedsMaxBackoff(t *testing.T) {
	const limit = 5 * time.Second

	for _, draw := range []float64{0, 0.5, 0.999} {
		j := &jittered{
			BackOff: backoff.NewExponentialBackOff(backoff.WithInitialInterval(time.Second), backoff.WithMaxInterval(limit),
				backoff.WithMaxElapsedTime(0), backoff.WithRandomizationFactor(0)),
			rand:  func() float64 { return draw },
			limit: limit,
		}

		longest := time.Duration(0)
		for range 20 {
			longest = max(longest, j.NextBackOff())
		}

		if longest > limit {
			t.Fatalf("jitter %.3f: waited %s, more than MaxBackoff %s", draw, longest, limit)
		}

		if draw > 0.9 && longest != limit {
			t.Fatalf("jitter %.3f: longest wait %s, want the cap %s", draw, longest, limit)
		}
	}
}
