package simulation

import (
	"container/heap"
	"time"
)

// event is one thing that happens at a virtual instant. Ties run in the
// order they were scheduled (seq), which the scheduler keeps deterministic.
type event struct {
	at  time.Duration
	seq uint64
	fn  func()
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
