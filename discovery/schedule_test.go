package discovery

import (
	"testing"
	"time"
)

func TestNextScanDelay(t *testing.T) {
	const interval = 30 * time.Second
	var got []time.Duration
	for attempt := range 7 {
		got = append(got, NextScanDelay(1, 3, attempt, interval))
	}
	want := []time.Duration{1 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("below quorum: got %v, want %v", got, want)
		}
	}
	if d := NextScanDelay(3, 3, 0, interval); d != interval {
		t.Fatalf("at quorum: %v", d)
	}
	if d := NextScanDelay(5, 3, 0, interval); d != interval {
		t.Fatalf("above quorum: %v", d)
	}
	if d := NextScanDelay(0, 3, 1000, interval); d != interval {
		t.Fatalf("many attempts: %v", d)
	}
	if d := NextScanDelay(0, 3, 0, 500*time.Millisecond); d != 500*time.Millisecond {
		t.Fatalf("interval shorter than the first delay: %v", d)
	}
}
