package election

import (
	"fmt"
	"time"
)

// SendState is what this node knows of the Bootstrap request for its own
// intent, in the boot that decided it. The states only move forward within
// a boot, except that a request refused before machined acted goes back to
// unsent: that is the one case in which nothing may be under way.
type SendState string

// Send states.
const (
	// SendNone: no bootstrap was decided (or it was withdrawn).
	SendNone SendState = ""
	// SendUnsent: decided and persisted, never sent, or only refused "not
	// now" before machined acted: it may still be withdrawn.
	SendUnsent SendState = "unsent"
	// SendLeaving: the request is about to leave (persisted just before the
	// RPC) and its answer is not recorded yet. Found again by the next
	// send, it means that answer was lost (a crash, a failed persist), so
	// the request may have arrived.
	SendLeaving SendState = "leaving"
	// SendMayHaveArrived: machined may have accepted the request (an answer
	// that says nothing, or a lost one): never withdrawn in this boot, and
	// resent on this node only.
	SendMayHaveArrived SendState = "may-have-arrived"
	// SendAnswered: machined accepted it, or found etcd data already.
	SendAnswered SendState = "answered"
)

func (s SendState) known() bool {
	switch s {
	case SendNone, SendUnsent, SendLeaving, SendMayHaveArrived, SendAnswered:
		return true
	}

	return false
}

// Send is this node's own bootstrap: the intent, the boot that decided it,
// and what is known of its request. Only the functions that decide, send,
// record and withdraw change it (the methods below, called by Step,
// MarkSending and AfterBootstrap), so that "a request that may have reached
// machined is never taken back in its boot" is written in one place.
//
// It is embedded in Status, so its fields keep their flat names in the
// status file: peers of every release read "bootstrapping" and
// "bootstrapBootID" there.
type Send struct {
	// Bootstrapping is the own intent being bootstrapped (0: none).
	Bootstrapping uint64 `json:"bootstrapping"`
	// BootstrapBootID is the boot that decided it: a later boot knows the
	// request, which lived in machined's memory, died unless etcd data
	// exists.
	BootstrapBootID string `json:"bootstrapBootID,omitempty"`
	// SendState says what is known of the request.
	SendState SendState `json:"bootstrapSend,omitempty"`
	// BootstrapAt is when the request last left or was answered: a resend
	// waits Observation.ResendAfter from it, so that a request accepted
	// just before a crash can show its etcd data first. Zero while unsent.
	BootstrapAt time.Time `json:"bootstrapAt,omitzero"`
}

// Withdrawable: nothing of this bootstrap can have reached machined, so
// it may still be given up (a cluster or an init node appeared).
func (s Send) Withdrawable() bool {
	return s.SendState == SendNone || s.SendState == SendUnsent
}

// decided is a new bootstrap of intent k in boot bootID, not sent yet.
func decided(k uint64, bootID string) Send {
	return Send{Bootstrapping: k, BootstrapBootID: bootID, SendState: SendUnsent}
}

// leaving marks the request as about to leave. A leaving mark found in
// place means an earlier send of this intent left and its answer was never
// recorded: machined may have accepted it.
func (s Send) leaving(now time.Time) Send {
	switch s.SendState {
	case SendNone, SendUnsent:
		s.SendState = SendLeaving
	case SendLeaving:
		s.SendState = SendMayHaveArrived
	case SendMayHaveArrived, SendAnswered:
	}

	s.BootstrapAt = now

	return s
}

// answered records machined's answer. A refusal before machined acted
// makes the request unsent again only if nothing earlier may still be
// under way: after a lost or unknown answer, a refused resend says nothing
// of the first request.
func (s Send) answered(outcome BootstrapOutcome, now time.Time) Send {
	s.BootstrapAt = now

	switch outcome {
	case Accepted, AlreadyExists:
		s.SendState = SendAnswered
	case RetryLater, Rejected:
		if s.SendState == SendLeaving || s.SendState == SendUnsent {
			s.SendState, s.BootstrapAt = SendUnsent, time.Time{}
		}
	case NotControlPlane:
		// Talos cannot bootstrap this node at all: the daemon halts and the
		// locks hold; what was known stays.
	default:
		s.SendState = SendMayHaveArrived
	}

	return s
}

// diedWithItsBoot: the request of an earlier boot lived in machined's
// memory, and no etcd data shows it took effect; the intent is withdrawn
// by the caller, and the record of which intent it was stays.
func (s Send) diedWithItsBoot() Send {
	s.SendState, s.BootstrapAt = SendNone, time.Time{}

	return s
}

func (s Send) validate() error {
	if !s.SendState.known() {
		return fmt.Errorf("unknown bootstrap send state %q", s.SendState)
	}

	return nil
}
