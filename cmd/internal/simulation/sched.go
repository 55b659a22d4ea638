package simulation

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing/synctest"
	"time"
)

// The scheduler runs every daemon as real goroutines inside a synctest
// bubble, but lets only one thing happen at a time: it pops an event, lets
// the goroutine that event wakes run until every goroutine of the bubble is
// blocked again (synctest.Wait), then orders what they asked for (RPCs,
// timers) by a key that does not depend on goroutine scheduling, and only
// then draws randomness for it. The daemon's code runs unchanged; the
// interleavings come from the seed (the number a scenario is drawn from)
// alone.

// sched is the virtual time line shared by the Talos model and the daemons.
type sched struct {
	// mu guards everything the daemons' goroutines touch: the scheduler
	// holds it while it runs events and releases it while they run.
	mu      sync.Mutex
	rng     *rand.Rand
	now     time.Duration
	q       queue
	seq     uint64
	pending []request
	// woke says that the running event (or a request it started) made a
	// daemon goroutine runnable: only then must the loop wait for the
	// bubble to be idle again. Waiting after an event that woke nobody
	// (a request arriving, most of the Talos model) would change nothing
	// and costs a round trip through the runtime's scheduler.
	woke bool
	// stepping: the scheduler side holds mu (it runs an event or a
	// check); otherwise whoever holds it is a daemon goroutine.
	stepping bool
}

// request is something a daemon goroutine asked for, started by the
// scheduler in key order.
type request struct {
	key   string
	start func()
}

// result is what a parked call receives.
type result struct {
	v   any
	err error
}

// call is one parked daemon operation.
type call struct {
	d        *daemonRun
	done     chan result
	answered bool
	// timeout is the event that fails the call if nothing answers first.
	timeout *event
}

func newSched(seed uint64) *sched {
	return &sched{rng: rand.New(rand.NewPCG(seed, 0x6b6f6d6d6f646974))}
}

// at schedules fn after d. Scheduler side (mu held).
func (s *sched) at(d time.Duration, fn func()) *event {
	s.seq++
	e := &event{at: s.now + max(d, 0), seq: s.seq, fn: fn}
	s.q.push(e)

	return e
}

func (s *sched) dur(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}

	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

func (s *sched) chance(p float64) bool { return p > 0 && s.rng.Float64() < p }

// register queues a request from a daemon goroutine (mu held by caller).
func (s *sched) register(key string, start func()) {
	s.pending = append(s.pending, request{key: key, start: start})
}

// park registers a call under key (one of d's: it starts with
// d.keyPrefix) and blocks the daemon goroutine until the scheduler answers
// it. A dead daemon's calls fail at once.
func (s *sched) park(ctx context.Context, d *daemonRun, key string, start func(c *call)) (any, error) {
	s.mu.Lock()

	if d.dead {
		s.mu.Unlock()

		return nil, context.Canceled
	}

	c := &call{d: d, done: make(chan result, 1)}
	d.outstanding[c] = struct{}{}
	s.register(key, func() { start(c) })
	s.mu.Unlock()

	r := <-c.done
	if r.err == nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}

	return r.v, r.err
}

// answer completes a call once; later answers (a timeout after the reply)
// are ignored. Scheduler side.
func (s *sched) answer(c *call, v any, err error) {
	if c.answered {
		return
	}

	c.answered = true
	if c.timeout != nil {
		c.timeout.cancelled = true
	}

	delete(c.d.outstanding, c)
	s.woke = true
	c.done <- result{v: v, err: err}
}

// flush starts the requests made since the last quiescence, in key order.
func (s *sched) flush() {
	if len(s.pending) == 0 {
		return
	}

	batch := s.pending
	s.pending = nil

	slices.SortStableFunc(batch, func(a, b request) int { return strings.Compare(a.key, b.key) })

	for i := 1; i < len(batch); i++ {
		if batch[i].key == batch[i-1].key {
			panic(fmt.Sprintf("simulation: two concurrent requests share the key %q: the order would depend on goroutine scheduling", batch[i].key))
		}
	}

	for _, r := range batch {
		r.start()
	}
}

// loop runs events until the queue is empty, the horizon is passed or stop
// says so; check runs after every event, once the daemons it woke are
// blocked again. It must run inside a synctest bubble.
func (s *sched) loop(horizon time.Duration, stop func() bool, check func()) {
	wait := true

	for {
		if wait {
			synctest.Wait()
		}

		s.mu.Lock()
		s.stepping = true
		s.woke = false
		check()
		s.flush()

		if s.woke {
			// A request was answered as it started: the daemon runs
			// before anything else happens, as after an event.
			wait = true
			s.stepping = false
			s.mu.Unlock()

			continue
		}

		for len(s.q) > 0 && s.q[0].cancelled {
			s.q.pop()
		}

		if len(s.q) == 0 || s.q[0].at > horizon || stop() {
			s.stepping = false
			s.mu.Unlock()

			return
		}

		e := s.q.pop()
		s.now = e.at

		if e.fn != nil {
			e.fn()
		}

		wait = s.woke
		s.stepping = false
		s.mu.Unlock()
	}
}
