package states

import (
	"context"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// Run is one run of the daemon: a session on deps, walked by the fsm
// supervisor until Done, a permanent error or ctx ends. The daemon and the
// simulator both start here, so that they run the same machine.
func Run(ctx context.Context, deps Deps, maxBackoff time.Duration, onStep func(fsm.Step)) error {
	return RunMachine(ctx, deps, fsm.Machine{MaxBackoff: maxBackoff, OnStep: onStep})
}

// RunMachine is Run with the supervisor's options (MaxBackoff, OnStep,
// Jitter) taken from machine; its handlers, log and clock come from deps.
func RunMachine(ctx context.Context, deps Deps, machine fsm.Machine) error {
	session := NewSession(deps)
	defer session.Close()

	machine.Handlers = session.Handlers()
	machine.Log = deps.Log
	machine.Clock = deps.Clock
	machine.InitialBackoff = min(time.Second, machine.MaxBackoff)
	machine.OnEnter = session.Entered

	return machine.Run(ctx)
}
