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

	if decision.Kind != election.BeginBootstrap {
		return s.act(obs, decision) // a cluster or a better leader appeared, or the send is no longer due
	}

	if err := election.ConfirmLocks(s.status, obs); err != nil {
		return "", fmt.Errorf("confirm locks before bootstrap: %w", err)
	}

	// Connect looked for Omni once, and this may be minutes later: a
	// SideroLinkConfig applied to the running machine meanwhile makes Omni
	// bootstrap this cluster too. Looked for again at the one moment a
	// second bootstrapper would do harm.
	signal, err := s.sideroLinkSignal(ctx)
	if err != nil {
		return "", fmt.Errorf("look for Omni before bootstrap: %w", err)
	}

	if signal != "" {
		return "", s.standDown(election.StandDownMessage(signal))
	}

	if err := s.persist(election.MarkSending(s.status, s.Clock.Now())); err != nil {
		return "", err
	}

	s.Log.Info().Uint64("intent", s.status.Bootstrapping).Msg("executing bootstrap")

	rpcErr := s.local.Bootstrap(ctx)
	outcome := transport.ClassifyBootstrap(rpcErr)

	next, decision := election.AfterBootstrap(s.status, outcome, s.Clock.Now())
	if err := s.persist(next); err != nil {
		return "", err
	}

	switch {
	case decision.Kind == election.Wait:
		// Refused before machined acted: a failed state, retried with
		// backoff (the retry reads every lock again before sending).
		return "", fmt.Errorf("%w (%s): %w", errRetryBootstrap, outcome, rpcErr)
	case decision.Kind == election.Halt:
		return "", backoff.Permanent(fmt.Errorf("apid refuses bootstrap on this node: %w", rpcErr))
	case outcome == election.AlreadyExists:
		s.Log.Info().Msg("etcd already has data on this node, verifying it")
	case outcome == election.Unknown:
		s.Log.Warn().Err(rpcErr).Msg("bootstrap outcome unknown, treating it as sent and verifying etcd")
	}

	return s.act(obs, decision)
}
