package simulation

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The queue hands out events by time, ties in the order they were queued,
// whatever the order of the pushes and pops in between.
func TestQueuePopsByTimeThenSequence(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))

	var (
		q    queue
		seq  uint64
		last *event
	)

	for range 10000 {
		if len(q) == 0 || rng.IntN(3) > 0 {
			seq++
			// Few distinct times, so that ties are common; never earlier
			// than what was popped, as on the scheduler's time line.
			at := time.Duration(rng.IntN(20))
			if last != nil {
				at += last.at
			}

			q.push(&event{at: at, seq: seq})

			continue
		}

		e := q.pop()
		if last != nil && e.before(last) {
			t.Fatalf("popped (%v, %d) after (%v, %d)", e.at, e.seq, last.at, last.seq)
		}

		last = e
	}
}
