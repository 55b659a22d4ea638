package fsm

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jonboulle/clockwork"
	lfsm "github.com/looplab/fsm"
	"github.com/rs/zerolog"
)

// Handler does one state's work and says what happened. An error is retried
// with backoff unless it is wrapped with backoff.Permanent.
type Handler interface {
	Handle(ctx context.Context) (Event, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context) (Event, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context) (Event, error) { return f(ctx) }

// Step is one transition taken, as the trace log shows it.
type Step struct {
	From, To State
	Event    Event
	Spent    time.Duration
}

// Machine runs handlers along the table.
type Machine struct {
	Handlers map[State]Handler
	Log      zerolog.Logger
	Clock    clockwork.Clock
	// MaxBackoff caps the retry interval of a failing state.
	MaxBackoff time.Duration
	// InitialBackoff is the first retry interval (default 1 s).
	InitialBackoff time.Duration
	// OnStep, when set, sees every transition (tests record the sequence).
	OnStep func(Step)
	// OnEnter, when set, is called with every state entered (the daemon
	// publishes it in its status file).
	OnEnter func(State)
	// Jitter, when set, is the source of the retry intervals' randomness
	// (values in [0, 1)); nil uses backoff's own (math/rand). The
	// simulator sets it so that a seed decides every interval.
	Jitter func() float64
}

// randomization spreads retries of many nodes over ±50 % of the interval.
const randomization = 0.5

// ErrNoHandler means the table leads to a state nobody handles.
var ErrNoHandler = errors.New("no handler for state")

// Run walks the machine from Initial until Done (nil), a permanent error, or
// ctx ends.
func (m *Machine) Run(ctx context.Context) error {
	machine := New()

	if m.OnEnter != nil {
		m.OnEnter(Initial)
	}

	for {
		current := State(machine.Current())
		if current == Done {
			return nil
		}

		handler, ok := m.Handlers[current]
		if !ok {
			return fmt.Errorf("%w %s", ErrNoHandler, current)
		}

		entered := m.Clock.Now()

		event, err := m.runWithRetry(ctx, current, handler)
		if err != nil {
			return fmt.Errorf("state %s: %w", current, err)
		}

		if err := machine.Event(ctx, string(event)); err != nil && !errors.As(err, new(lfsm.NoTransitionError)) {
			// The handler returned an event the table has no row for: a
			// programming error, not something a retry fixes.
			return fmt.Errorf("state %s: event %s: %w", current, event, err)
		}

		step := Step{From: current, To: State(machine.Current()), Event: event, Spent: m.Clock.Since(entered)}
		m.Log.Info().
			Str("from", string(step.From)).
			Str("to", string(step.To)).
			Str("event", string(step.Event)).
			Float64("spent_s", step.Spent.Seconds()).
			Msg("state transition")

		if m.OnStep != nil {
			m.OnStep(step)
		}

		if m.OnEnter != nil {
			m.OnEnter(step.To)
		}
	}
}

func (m *Machine) runWithRetry(ctx context.Context, state State, handler Handler) (Event, error) {
	initial := m.InitialBackoff
	if initial <= 0 {
		initial = time.Second
	}

	jitter := m.Jitter
	if jitter == nil {
		jitter = rand.Float64
	}

	limit := max(m.MaxBackoff, initial)
	policy := &jittered{
		// The jitter is applied, and capped, by jittered: backoff's own
		// randomization is added after its cap, so a wait could exceed
		// MAX_BACKOFF by half.
		BackOff: backoff.NewExponentialBackOff(
			backoff.WithInitialInterval(initial),
			backoff.WithMaxInterval(limit),
			backoff.WithMaxElapsedTime(0), // Talos restarts us anyway; keep trying in place
			backoff.WithRandomizationFactor(0),
			backoff.WithClockProvider(m.Clock),
		),
		rand:  jitter,
		limit: limit,
	}

	attempt := 0

	return backoff.RetryNotifyWithTimerAndData(
		func() (Event, error) {
			attempt++

			if err := ctx.Err(); err != nil {
				return "", backoff.Permanent(err)
			}

			return handler.Handle(ctx)
		},
		backoff.WithContext(policy, ctx),
		func(err error, next time.Duration) {
			m.Log.Warn().
				Str("state", string(state)).
				Int("attempt", attempt).
				Dur("retry_in", next).
				Err(err).
				Msg("state failed, retrying")
		},
		&clockTimer{clock: m.Clock},
	)
}

// jittered randomizes a policy's intervals, as backoff's
// RandomizationFactor does, and never waits longer than limit.
type jittered struct {
	backoff.BackOff
	rand  func() float64
	limit time.Duration
}

func (j *jittered) NextBackOff() time.Duration {
	d := j.BackOff.NextBackOff()
	if d == backoff.Stop {
		return d
	}

	return min(time.Duration(float64(d)*(1-randomization+2*randomization*j.rand())), j.limit)
}

// clockTimer lets backoff wait on an injected clock, so tests do not sleep.
type clockTimer struct {
	clock clockwork.Clock
	timer clockwork.Timer
}

func (t *clockTimer) Start(d time.Duration) {
	if t.timer == nil {
		t.timer = t.clock.NewTimer(d)

		return
	}

	t.timer.Reset(d)
}

func (t *clockTimer) Stop() {
	if t.timer != nil {
		t.timer.Stop()
	}
}

func (t *clockTimer) C() <-chan time.Time { return t.timer.Chan() }
