package simulation

import (
	"container/heap"
	"strconv"
	"strings"
	"time"
)

// event is one thing that happens at a virtual instant. Ties run in the
// order they were scheduled (seq), which the scheduler keeps deterministic.
type event struct {
	at  time.Duration
	seq uint64
	fn  func()
	// cancelled: the event can no longer change anything (the call it
	// would time out was answered, the timer it would fire was stopped).
	// The loop drops it unseen, so it costs neither a quiescence wait
	// nor a check.
	cancelled bool
}

// padded is n in decimal with leading zeros up to width digits, as %0*d
// prints it: request keys are built for every RPC, and fmt was a tenth of
// the simulator's time.
func padded[T ~int | ~uint64](n T, width int) string {
	s := strconv.FormatUint(uint64(n), 10)
	if len(s) >= width {
		return s
	}

	return strings.Repeat("0", width-len(s)) + s
}

// queue is a min-heap of events by (at, seq).
type queue []*event

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}

	return q[i].seq < q[j].seq
}
func (q queue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *queue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]

	return e
}

func (q *queue) push(e *event) { heap.Push(q, e) }
func (q *queue) pop() *event   { return heap.Pop(q).(*event) }
