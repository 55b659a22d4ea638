package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// The demo's timeline: every daemon log line is timestamped when the demo
// reads it (the daemon's own "time" field has whole seconds only), parsed
// into an event, and the events of each node become a lane of state spans
// and marks. Text and SVG are two renderings of the same lanes.

// markKind is a moment worth pointing at in a node's timeline.
type markKind string

const (
	markAnnounce  markKind = "announce"  // the leader published its intent
	markLock      markKind = "lock"      // a follower locked to a leader's intent
	markBootstrap markKind = "bootstrap" // the Bootstrap RPC is being sent
)

// event is one parsed log line of one node: a state entered (state set) or
// a mark (mark set). Lines that are neither are not events.
type event struct {
	node  string
	at    time.Duration // since the demo started
	state fsm.State     // entered, with from and how, for a transition
	from  fsm.State
	how   string
	mark  markKind
	label string
}

// logLine is the part of a daemon's JSON log line the timeline reads.
type logLine struct {
	Msg      string `json:"msg"`
	From     string `json:"from"`
	To       string `json:"to"`
	Event    string `json:"event"`
	Intent   uint64 `json:"intent"`
	Leader   string `json:"leader"`
	IsLeader bool   `json:"is_leader"`
	Reason   string `json:"reason"`
}

// parseLine turns one log line of node, read at at, into an event; ok is
// false for lines that are not a transition or a mark (and for non-JSON).
func parseLine(node string, at time.Duration, line string) (event, bool) {
	var l logLine
	if err := json.Unmarshal([]byte(line), &l); err != nil {
		return event{}, false
	}

	e := event{node: node, at: at}

	switch {
	case l.Msg == "state transition" && l.To != "":
		e.state, e.from, e.how = fsm.State(l.To), fsm.State(l.From), l.Event
	case l.Msg == "waiting before bootstrap":
		e.mark, e.label = markAnnounce, fmt.Sprintf("announce intent %d", l.Intent)
	case l.Msg == "leader election complete" && !l.IsLeader && strings.Contains(l.Reason, "locked to "):
		e.mark, e.label = markLock, "lock to "+lockTarget(l.Reason)
	case l.Msg == "executing bootstrap":
		e.mark, e.label = markBootstrap, fmt.Sprintf("Bootstrap intent %d", l.Intent)
	default:
		return event{}, false
	}

	return e, true
}

// lockTarget is what a "locked to X" reason names, for a person: the
// leader's address and intent number (its boot id is left out).
func lockTarget(reason string) string {
	target := reason[strings.LastIndex(reason, "locked to ")+len("locked to "):]
	if end := strings.IndexAny(target, " ;"); end >= 0 {
		target = target[:end]
	}

	target = strings.TrimSuffix(target, ":")

	if addr, rest, ok := strings.Cut(target, "/"); ok {
		if _, intent, ok := strings.Cut(rest, "#"); ok {
			return addr + " intent " + intent
		}
	}

	return target
}

// span is a stretch of time a node spent in one state; self-transitions
// (Scan to Scan) extend it.
type span struct {
	state      fsm.State
	start, end time.Duration
}

type mark struct {
	kind  markKind
	at    time.Duration
	label string
}

// lane is one node's timeline. entries keeps states and marks in the order
// they happened, for the text rendering.
type lane struct {
	node    string
	title   string // shown next to the node's name
	spans   []span
	marks   []mark
	entries []event
	worker  bool
}

// role names what the node turned out to be.
func (l *lane) role() string {
	for _, m := range l.marks {
		if m.kind == markBootstrap {
			return "leader"
		}
	}

	switch {
	case len(l.marks) > 0:
		return "follower"
	case l.worker:
		return "worker"
	}

	return ""
}

type timeline struct {
	lanes []*lane
	end   time.Duration // the last event of any node
}

// buildTimeline groups events by node, in the order of nodes (nodes without
// events get an empty lane); titles, keyed by node, annotate the lanes. A
// node's first state is the from of its first transition, entered at its
// first event; its last state lasts until the timeline's end.
func buildTimeline(nodes []string, titles map[string]string, events []event) *timeline {
	tl := &timeline{}
	byNode := map[string]*lane{}

	for _, n := range nodes {
		l := &lane{node: n, title: titles[n]}
		tl.lanes = append(tl.lanes, l)
		byNode[n] = l
	}

	for _, e := range events {
		l, ok := byNode[e.node]
		if !ok {
			continue
		}

		tl.end = max(tl.end, e.at)

		if e.mark != "" {
			if e.mark == markLock && l.lockedTo(e.label) {
				continue // the lock it already had, found again by another election
			}

			l.marks = append(l.marks, mark{kind: e.mark, at: e.at, label: e.label})
			l.entries = append(l.entries, e)

			continue
		}

		if e.how == string(fsm.WorkerDetected) {
			l.worker = true
		}

		if len(l.spans) == 0 {
			l.spans = append(l.spans, span{state: e.from, start: e.at})
			l.entries = append(l.entries, event{node: e.node, at: e.at, state: e.from})
		}

		last := &l.spans[len(l.spans)-1]
		if last.state == e.state {
			continue
		}

		last.end = e.at
		l.spans = append(l.spans, span{state: e.state, start: e.at})
		l.entries = append(l.entries, e)
	}

	for _, l := range tl.lanes {
		if n := len(l.spans); n > 0 {
			l.spans[n-1].end = tl.end
		}
	}

	return tl
}

// lockedTo reports whether the node's latest lock mark has this label.
func (l *lane) lockedTo(label string) bool {
	for i := len(l.marks) - 1; i >= 0; i-- {
		if l.marks[i].kind == markLock {
			return l.marks[i].label == label
		}
	}

	return false
}

var markSymbols = map[markKind]string{
	markAnnounce:  "▲",
	markLock:      "●",
	markBootstrap: "★",
}

// sameLine is how close in time entries are printed on one line.
const sameLine = 100 * time.Millisecond

// text renders one compact block per node: a header, then one line per
// moment, its states joined by arrows and then its marks with their symbols.
func (tl *timeline) text() string {
	var b strings.Builder

	for _, l := range tl.lanes {
		fmt.Fprintln(&b, strings.TrimSpace(fmt.Sprintf("%-4s %-12s %s", l.node, l.title, l.role())))

		if len(l.entries) == 0 {
			fmt.Fprintln(&b, "  (no state transitions logged)")

			continue
		}

		for i := 0; i < len(l.entries); {
			start := l.entries[i].at

			var states, marks []string

			for ; i < len(l.entries) && l.entries[i].at-start < sameLine; i++ {
				if e := l.entries[i]; e.mark != "" {
					marks = append(marks, markSymbols[e.mark]+" "+e.label)
				} else {
					states = append(states, string(e.state))
				}
			}

			line := strings.Join(append([]string{strings.Join(states, " → ")}, marks...), "   ")
			fmt.Fprintf(&b, "  %6.1fs  %s\n", start.Seconds(), strings.TrimSpace(line))
		}
	}

	return b.String()
}
