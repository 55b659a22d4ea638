package simulation

import (
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

// requestKey is prefix, name, then n in decimal with leading zeros up to
// width digits (as %0*d prints it), then "|"+method when method is set,
// built in one allocation: a key is made for every RPC and timer, and fmt,
// then concatenation, were a tenth and a twentieth of the simulator's time.
func requestKey(prefix, name string, n uint64, width int, method string) string {
	var digits [20]byte

	d := strconv.AppendUint(digits[:0], n, 10)

	var b strings.Builder

	b.Grow(len(prefix) + len(name) + max(width, len(d)) + 1 + len(method))
	b.WriteString(prefix)
	b.WriteString(name)

	for range width - len(d) {
		b.WriteByte('0')
	}

	b.Write(d)

	if method != "" {
		b.WriteByte('|')
		b.WriteString(method)
	}

	return b.String()
}

// queue is a binary min-heap of events by (at, seq), written out for the
// one element type: container/heap's interface calls and boxing were a
// tenth of the simulator's time.
type queue []*event

func (e *event) before(o *event) bool {
	if e.at != o.at {
		return e.at < o.at
	}

	return e.seq < o.seq
}

func (q *queue) push(e *event) {
	h := append(*q, e)
	i := len(h) - 1

	for i > 0 {
		parent := (i - 1) / 2
		if !h[i].before(h[parent]) {
			break
		}

		h[i], h[parent] = h[parent], h[i]
		i = parent
	}

	*q = h
}

func (q *queue) pop() *event {
	h := *q
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = nil
	h = h[:last]

	for i := 0; ; {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h[l].before(h[least]) {
			least = l
		}

		if r < len(h) && h[r].before(h[least]) {
			least = r
		}

		if least == i {
			break
		}

		h[i], h[least] = h[least], h[i]
		i = least
	}

	*q = h

	return top
}
