package discovery

import (
	"testing"
	"time"
)

func TestNextScanDelay(t *testing.T) {
	const timeout, interval = 2 * time.Second, 30 * time.Second
	fast := FastRounds(timeout)
	if fast != 75 { // 5 min of 4 s rounds
		t.Fatalf("fast rounds %d, want 75", fast)
	}
	for attempt := range fast {
		if d := NextScanDelay(1, 3, attempt, timeout, interval); d != timeout {
			t.Fatalf("below quorum, attempt %d: %v, want %v", attempt, d, timeout)
		}
	}
	if d := NextScanDelay(1, 3, fast, timeout, interval); d != interval {
		t.Fatalf("below quorum after the fast phase: %v, want %v", d, interval)
	}
	if d := NextScanDelay(3, 3, 0, timeout, interval); d != interval {
		t.Fatalf("at quorum: %v", d)
	}
	if d := NextScanDelay(5, 3, 0, timeout, interval); d != interval {
		t.Fatalf("above quorum: %v", d)
	}
	if d := NextScanDelay(0, 3, 0, timeout, 500*time.Millisecond); d != 500*time.Millisecond {
		t.Fatalf("interval shorter than the timeout: %v", d)
	}
}
