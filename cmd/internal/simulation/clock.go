package simulation

import (
	"time"

	"github.com/jonboulle/clockwork"
)

// epoch is the simulated wall clock at virtual time 0.
var epoch = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

// nodeClock is one daemon's clock: the node's wall clock (virtual time plus
// the node's clock error, which a time sync or a step changes), with timers
// on the virtual time line.
type nodeClock struct {
	s      *sched
	d      *daemonRun
	timers int
}

var _ clockwork.Clock = (*nodeClock)(nil)

func (c *nodeClock) Now() time.Time {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()

	return c.d.node.wall(c.s.now)
}

func (c *nodeClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c *nodeClock) Until(t time.Time) time.Duration { return t.Sub(c.Now()) }

func (c *nodeClock) Sleep(d time.Duration) { <-c.After(d) }

func (c *nodeClock) After(d time.Duration) <-chan time.Time { return c.NewTimer(d).Chan() }

func (c *nodeClock) NewTimer(d time.Duration) clockwork.Timer {
	t := &simTimer{clock: c, ch: make(chan time.Time, 1)}
	t.Reset(d)

	return t
}

func (c *nodeClock) AfterFunc(d time.Duration, f func()) clockwork.Timer {
	t := &simTimer{clock: c, ch: make(chan time.Time, 1), fn: f}
	t.Reset(d)

	return t
}

func (c *nodeClock) NewTicker(time.Duration) clockwork.Ticker {
	panic("simulation: the daemon does not use tickers")
}

// simTimer fires on the virtual time line. Its generation makes a Stop or
// Reset void the event scheduled before.
type simTimer struct {
	clock *nodeClock
	ch    chan time.Time
	fn    func()
	gen   int
	armed bool
	// ev is the event of the last arming, cancelled by a Stop or Reset.
	ev *event
}

func (t *simTimer) Chan() <-chan time.Time { return t.ch }

func (t *simTimer) Stop() bool {
	s := t.clock.s
	s.mu.Lock()
	defer s.mu.Unlock()

	was := t.armed
	t.armed = false
	t.gen++
	t.cancel()

	return was
}

func (t *simTimer) Reset(d time.Duration) bool {
	c := t.clock
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()

	was := t.armed
	t.gen++
	t.armed = true
	t.cancel()
	gen := t.gen
	c.timers++

	if c.d.dead {
		return was
	}

	s.register(requestKey(c.d.keyPrefix, "timer|", uint64(c.timers), 8, ""), func() {
		if t.gen != gen {
			return // stopped or reset before it started
		}

		t.ev = s.at(d, func() {
			if t.gen != gen || !t.armed || c.d.dead {
				return
			}

			t.armed = false
			s.woke = true

			if t.fn != nil {
				go t.fn()

				return
			}

			select {
			case t.ch <- c.d.node.wall(s.now):
			default:
			}
		})
	})

	return was
}

// cancel drops the event of the previous arming (scheduler lock held).
func (t *simTimer) cancel() {
	if t.ev != nil {
		t.ev.cancelled = true
		t.ev = nil
	}
}
