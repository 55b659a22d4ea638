package discovery

import "time"

// FirstRescanDelay is the shortest pause between two rounds while quorum is
// missing: it keeps a round that found nothing to sweep from spinning.
const FirstRescanDelay = 100 * time.Millisecond

// FastSweepFor is how long rounds follow each other at the sweep's full
// pace (one pace window apart) while quorum is missing and the number of
// known control-plane nodes does not change. Nodes of a new cluster boot
// within minutes of each other; after that the pace falls back to one
// round per SCAN_INTERVAL.
const FastSweepFor = 5 * time.Minute

// NextScanDelay is the pause before the next round. At quorum it is
// scanInterval. Below quorum it is one SCAN_TIMEOUT (the caller may shorten
// it to the opening of the sweep's next pace window) for the first
// FastSweepFor of rounds, counted by attempt (the rounds since the number
// of known control-plane nodes last changed, 0 for the first), then
// scanInterval.
func NextScanDelay(knownControlPlane, quorum, attempt int, scanTimeout, scanInterval time.Duration) time.Duration {
	if knownControlPlane >= quorum || scanInterval <= scanTimeout || scanTimeout <= 0 {
		return scanInterval
	}

	if attempt < FastRounds(scanTimeout) {
		return scanTimeout
	}

	return scanInterval
}

// FastRounds is the number of rounds of the fast phase: a round lasts
// about one SCAN_TIMEOUT (its silent addresses) and pauses another.
func FastRounds(scanTimeout time.Duration) int {
	return int(FastSweepFor / (PaceWindows * scanTimeout))
}
