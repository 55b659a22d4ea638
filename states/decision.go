package states

import (
	"cmp"
	"context"
	"errors"
	"fmt"

	"github.com/cenkalti/backoff/v4"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// EventOf is the one place where an election decision becomes an fsm event:
// from Elect on, a handler runs a round and returns the event of what Step
// decided; fsm.Table says which state carries it out. Halt has no event: the
// node can never bootstrap, and the run ends with an error.
var EventOf = map[election.DecisionKind]fsm.Event{
	election.Wait:           fsm.Wait,
	election.Lead:           fsm.Lead,
	election.Follow:         fsm.Follow,
	election.Joined:         fsm.Follow, // this node's etcd exists: it waits like a follower
	election.BeginBootstrap: fsm.SendBootstrap,
	election.AwaitEtcd:      fsm.AwaitingEtcd,
	election.Done:           fsm.Finish,
	election.StandDown:      fsm.StandDown,
}

// errHalted ends the run: Talos says this node can never bootstrap.
var errHalted = errors.New("halted")

// act turns a round's decision into the state's event, and says it in the
// log: what the node does next, and why.
func (s *Session) act(obs election.Observation, d election.Decision) (fsm.Event, error) {
	event, ok := EventOf[d.Kind]

	switch {
	case d.Kind == election.Halt:
		return "", backoff.Permanent(fmt.Errorf("%w: %s", errHalted, d.Reason))
	case !ok:
		return "", backoff.Permanent(fmt.Errorf("decision %s has no event", d.Kind))
	}

	switch {
	case s.state == fsm.Elect && (event == fsm.Lead || event == fsm.Follow):
		s.logElection(obs, d, event == fsm.Lead)
	case event == fsm.Finish:
		s.Log.Info().Str("reason", d.Reason).Msg(cmp.Or(doneMessage[s.state], nothingToBootstrap))
	default:
		s.Log.Info().Str("reason", d.Reason).Str("decision", d.Kind.String()).Msg(nextMessage[event])
	}

	if event != fsm.Lead {
		s.announcedLog = false
	}

	return event, nil
}

// nextMessage is what a round that leads on says.
var nextMessage = map[fsm.Event]string{
	fsm.Wait:          "not ready to elect yet",
	fsm.Lead:          "leader waiting",
	fsm.Follow:        "waiting for the cluster to be bootstrapped",
	fsm.SendBootstrap: "bootstrap due",
	fsm.AwaitingEtcd:  "bootstrap sent, verifying etcd",
	fsm.StandDown:     "standing down",
}

// doneMessage is what a node whose etcd is healthy says, by where it was;
// elsewhere it says nothingToBootstrap.
var doneMessage = map[fsm.State]string{
	fsm.AwaitEtcd:    "bootstrap successful",
	fsm.FollowerWait: "etcd member of this node is running, cluster bootstrapped",
}

const nothingToBootstrap = "etcd of this node is running and healthy, nothing to bootstrap"

// decideOnHealthyEtcd runs a round once this node's etcd runs: Step, the
// only writer of the phase, records the end.
func (s *Session) decideOnHealthyEtcd(ctx context.Context) (fsm.Event, error) {
	obs, decision, err := s.decide(ctx)
	if err != nil {
		return "", err
	}

	return s.act(obs, decision)
}
