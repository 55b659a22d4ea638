package states

import (
	"context"
	"errors"
	"fmt"

	"github.com/cenkalti/backoff/v4"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/election"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
	"github.com/kommodity-io/kommodity-autobootstrap-extension/transport"
)

// errRetryBootstrap is returned for answers that mean "not now": the
// supervisor retries this state with backoff, and the retry re-reads every
// lock before sending again.
var errRetryBootstrap = errors.New("bootstrap not possible yet")

// bootstrap sends the one Bootstrap of the cluster. The status already says
// "bootstrapping k" (persisted by the round that decided it). One more
// round reads every peer again, and may still withdraw an unsent bootstrap
// (a cluster appeared meanwhile); then the locks are confirmed, the send
// is recorded, and only then is the request sent.
func (s *Session) bootstrap(ctx context.Context) (fsm.Event, error) {
	// A fresh scan: a peer that rebooted since the last one (a retry after
	// "time is not in sync yet" can take minutes) is known only by its new
	// boot id, and its lock would never be confirmed on a stale view.
	obs, decision, err := s.refreshAndDecide(ctx)
	if err != nil {
		return "", err
	}

	switch decision.Kind {
	case election.BeginBootstrap:
	case election.AwaitEtcd:
		// Sent before (a restart) and possibly under way: never repeated
		// early.
		return fsm.BootstrapRequested, nil
	case election.Follow, election.Joined, election.Done:
		// Withdrawn before anything was sent: from here this node follows
		// and keeps running the protocol (FollowerWait), since the leader
		// it now follows may need its lock.
		s.Log.Info().Str("reason", decision.Reason).Msg("not bootstrapping, following")

		return fsm.ElectedFollower, nil
	default:
		return "", fmt.Errorf("%w: %s", errRetryBootstrap, decision.Reason)
	}

	if err := election.ConfirmLocks(s.status, obs); err != nil {
		return "", fmt.Errorf("confirm locks before bootstrap: %w", err)
	}

	// From here a restart must assume the request may be under way.
	if err := s.persist(election.MarkSending(s.status, s.Clock.Now())); err != nil {
		return "", err
	}

	s.Log.Info().Uint64("intent", s.status.Bootstrapping).Msg("executing bootstrap")

	rpcErr := s.local.Bootstrap(ctx)
	outcome := transport.ClassifyBootstrap(rpcErr)

	// Persist first: from Accepted, AlreadyExists or Unknown on, the request
	// may have taken effect and is never withdrawn or re-elected.
	next, decision := election.AfterBootstrap(s.status, outcome, s.Clock.Now())
	if err := s.persist(next); err != nil {
		return "", err
	}

	switch decision.Kind {
	case election.AwaitEtcd:
	case election.Halt:
		return "", backoff.Permanent(fmt.Errorf("apid refuses bootstrap on this node: %w", rpcErr))
	default:
		// "Not now" (time not in sync, not available yet) or refused before
		// anything happened: retried with backoff, re-reading every lock.
		return "", fmt.Errorf("%w (%s): %w", errRetryBootstrap, outcome, rpcErr)
	}

	switch outcome {
	case election.AlreadyExists:
		s.Log.Info().Msg("etcd already has data on this node, verifying it")

		return fsm.AlreadyBootstrapped, nil
	case election.Unknown:
		s.Log.Warn().Err(rpcErr).Msg("bootstrap outcome unknown, treating it as sent and verifying etcd")
	}

	return fsm.BootstrapRequested, nil
}
