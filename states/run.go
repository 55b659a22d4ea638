package states

import (
	"context"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// Run is one run of the daemon: a session on deps, walked by the fsm
// supervisor until Done, a permanent error or ctx ends. The supervisor's
// options (MaxBackoff, OnStep, Jitter) come from machine; its handlers, log
// and clock from deps. Package daemon wires it (daemon.Run is the entry
// point of the binary, the FSM tests and the simulator).
func Run(ctx context.Context, deps Deps, machine fsm.Machine) error {
	session := NewSession(deps)
	defer session.Close()

	machine.Handlers = session.Handlers()
	machine.Log = deps.Log
	machine.Clock = deps.Clock
	machine.InitialBackoff = min(time.Second, machine.MaxBackoff)
	machine.OnEnter = session.Entered

	return machine.Run(ctx)
}
