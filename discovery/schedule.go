package discovery

import "time"

// FirstRescanDelay is the pause after a scan that found fewer control-plane
// nodes than the quorum. Nodes of a new cluster boot within seconds of each
// other, so the next look should come soon.
const FirstRescanDelay = time.Second

// NextScanDelay is the pause before the next scan. While fewer than quorum
// control-plane nodes are known (self included), it starts at
// FirstRescanDelay and doubles with each attempt up to scanInterval, so a
// cluster reaches quorum about one round after its last node answers;
// attempt counts the scans since the number of known control-plane nodes
// last changed (0 for the first). At quorum it is scanInterval.
func NextScanDelay(knownControlPlane, quorum, attempt int, scanInterval time.Duration) time.Duration {
	if knownControlPlane >= quorum || scanInterval <= FirstRescanDelay {
		return scanInterval
	}
	d := FirstRescanDelay
	for i := 0; i < attempt && d < scanInterval; i++ {
		d *= 2
	}
	return min(d, scanInterval)
}
