package election

import (
	"sync"
	"time"
	"unicode/utf8"
)

// A daemon reads the same, mostly unchanged, status file of every peer each
// round (every few seconds while it waits), and decoding JSON was most of a
// round's CPU. Decoding is a pure function of the bytes, so the statuses
// decoded last are kept by content and handed out as deep copies: a caller
// may change what it gets without touching the memo.
const statusMemoSize = 512

var statusMemo = struct {
	sync.Mutex
	byContent map[string]*Status
}{byContent: map[string]*Status{}}

func rememberedStatus(data []byte) *Status {
	statusMemo.Lock()
	st := statusMemo.byContent[string(data)]
	statusMemo.Unlock()

	if st == nil {
		return nil
	}

	// A kept status is never changed, only forgotten: copying it needs no
	// lock. The copy is made on the heap, not in this frame: a Status is
	// large, and a round reads each peer's in a new goroutine, whose small
	// stack a copy in the frame made grow.
	c := new(Status)
	*c = *st
	c.copyShared()

	return c
}

func rememberStatus(data []byte, st Status) {
	statusMemo.Lock()
	defer statusMemo.Unlock()

	if len(statusMemo.byContent) >= statusMemoSize {
		// Forget all at once: cheaper than an LRU, and a round refills
		// what it uses.
		clear(statusMemo.byContent)
	}

	kept := st.Clone()
	statusMemo.byContent[string(data)] = &kept
}

// StatusAsRead returns the status a reader decodes from MarshalStatus(s),
// when that can be told without decoding: every time at UTC's offset and
// every string valid UTF-8 (JSON replaces invalid bytes). A writer then
// remembers what it wrote, so that reading it back, as the daemon's own
// status or by a process that shares the memo, costs no decoding.
func StatusAsRead(s Status) (Status, bool) {
	s = s.Clone()
	ok := true

	// A decoded time is UTC without a monotonic reading; an offset other
	// than zero decodes to a zone this cannot tell.
	at := func(t *time.Time) {
		if _, offset := t.Zone(); offset != 0 {
			ok = false
		}

		*t = t.Round(0).UTC()
	}
	text := func(v ...string) {
		for _, x := range v {
			ok = ok && utf8.ValidString(x)
		}
	}
	node := func(i Incarnation) { text(i.BootID, i.Node, i.IP.Zone()) }

	node(s.Incarnation)
	at(&s.BootTime)
	text(string(s.Phase), s.FSMState, s.BootstrapBootID, string(s.SendState), string(s.LeaderOrder), s.StandDown, s.Reason)
	at(&s.BootstrapAt)
	at(&s.AnnouncedAt)
	at(&s.UpdatedAt)

	if s.Lock != nil {
		node(s.Lock.Leader)
	}

	if s.Cluster != nil {
		node(s.Cluster.Node)
		text(s.Cluster.What)
		at(&s.Cluster.At)
	}

	if s.QuorumMismatch != nil {
		node(s.QuorumMismatch.Node)
		text(string(s.QuorumMismatch.LeaderOrder))
		at(&s.QuorumMismatch.At)
	}

	text(s.PastBoots...)

	for _, c := range s.Candidates {
		node(c)
	}

	// Empty lists are left out of the file and decode as nil.
	if len(s.PastBoots) == 0 {
		s.PastBoots = nil
	}

	if len(s.Candidates) == 0 {
		s.Candidates = nil
	}

	return s, ok
}
