package main

import (
	"encoding/xml"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// cannedLog is a demo run as the printer reads it: a leader (cp2) and two
// followers (cp1, cp3), each line "seconds node json", lines trimmed of the
// fields the timeline does not read. cp1 leaves FollowerWait once and finds
// the same lock again (no second mark); the leader's own election is no lock.
const cannedLog = `
2.3 cp1 {"level":"info","msg":"starting kommodity-autobootstrap-extension"}
2.3 cp1 {"level":"info","from":"Detect","to":"Credentials","event":"controlplane_detected","msg":"state transition"}
2.3 cp1 {"level":"info","from":"Credentials","to":"Connect","event":"credentials_ready","msg":"state transition"}
2.3 cp1 {"level":"info","from":"Connect","to":"Scan","event":"connected","msg":"state transition"}
2.9 cp2 {"level":"info","from":"Detect","to":"Credentials","event":"controlplane_detected","msg":"state transition"}
2.9 cp2 {"level":"info","from":"Credentials","to":"Connect","event":"credentials_ready","msg":"state transition"}
2.9 cp2 {"level":"info","from":"Connect","to":"Scan","event":"connected","msg":"state transition"}
3.3 cp1 {"level":"info","from":"Scan","to":"Scan","event":"quorum_missing","msg":"state transition"}
4.0 cp3 {"level":"info","from":"Detect","to":"Credentials","event":"controlplane_detected","msg":"state transition"}
4.0 cp3 {"level":"info","from":"Credentials","to":"Connect","event":"credentials_ready","msg":"state transition"}
4.0 cp3 {"level":"info","from":"Connect","to":"Scan","event":"connected","msg":"state transition"}
4.0 cp3 {"level":"info","from":"Scan","to":"Elect","event":"quorum_reached","msg":"state transition"}
4.0 cp3 {"level":"info","reason":"waiting for 127.0.10.2/ddbd343c to announce","msg":"not ready to elect yet"}
6.0 cp2 {"level":"info","from":"Scan","to":"Elect","event":"quorum_reached","msg":"state transition"}
6.0 cp2 {"level":"info","leader":"127.0.10.2","is_leader":true,"reason":"ranked first of 3: announced intent 1","msg":"leader election complete"}
6.0 cp2 {"level":"info","msg":"elected as leader, initiating bootstrap"}
6.0 cp2 {"level":"info","from":"Elect","to":"LeaderDelay","event":"lead","msg":"state transition"}
6.0 cp2 {"level":"info","delay":3,"intent":1,"msg":"waiting before bootstrap"}
6.1 cp3 {"level":"info","from":"Elect","to":"Scan","event":"wait","msg":"state transition"}
6.1 cp3 {"level":"info","from":"Scan","to":"Elect","event":"quorum_reached","msg":"state transition"}
6.1 cp3 {"level":"info","leader":"127.0.10.2","is_leader":false,"reason":"locked to 127.0.10.2/ddbd343c#1","msg":"leader election complete"}
6.1 cp3 {"level":"info","from":"Elect","to":"FollowerWait","event":"follow","msg":"state transition"}
6.3 cp1 {"level":"info","from":"Scan","to":"Elect","event":"quorum_reached","msg":"state transition"}
6.3 cp1 {"level":"info","leader":"127.0.10.2","is_leader":false,"reason":"locked to 127.0.10.2/ddbd343c#1","msg":"leader election complete"}
6.3 cp1 {"level":"info","from":"Elect","to":"FollowerWait","event":"follow","msg":"state transition"}
7.0 cp2 {"level":"info","from":"LeaderDelay","to":"LeaderDelay","event":"lead","msg":"state transition"}
8.3 cp1 {"level":"info","reason":"quorum missing: 2 of 3 control-plane nodes in view","msg":"lock released, electing again"}
8.3 cp1 {"level":"info","from":"FollowerWait","to":"Scan","event":"wait","msg":"state transition"}
8.3 cp1 {"level":"info","from":"Scan","to":"Elect","event":"quorum_reached","msg":"state transition"}
8.3 cp1 {"level":"info","leader":"127.0.10.2","is_leader":false,"reason":"locked to 127.0.10.2/ddbd343c#1","msg":"leader election complete"}
8.3 cp1 {"level":"info","from":"Elect","to":"FollowerWait","event":"follow","msg":"state transition"}
9.0 cp2 {"level":"info","from":"LeaderDelay","to":"Bootstrap","event":"send_bootstrap","msg":"state transition"}
9.0 cp2 {"level":"info","intent":1,"msg":"executing bootstrap"}
9.0 cp2 {"level":"info","from":"Bootstrap","to":"AwaitEtcd","event":"await_etcd","msg":"state transition"}
11.0 cp2 {"level":"info","msg":"bootstrap successful"}
11.0 cp2 {"level":"info","from":"AwaitEtcd","to":"Done","event":"done","msg":"state transition"}
14.1 cp3 {"level":"info","from":"FollowerWait","to":"Done","event":"done","msg":"state transition"}
14.4 cp1 {"level":"info","from":"FollowerWait","to":"Done","event":"done","msg":"state transition"}
`

func cannedEvents(t *testing.T) []event {
	t.Helper()

	var events []event

	for _, line := range strings.Split(strings.TrimSpace(cannedLog), "\n") {
		secs, rest, _ := strings.Cut(line, " ")
		node, js, _ := strings.Cut(rest, " ")

		at, err := time.ParseDuration(secs + "s")
		if err != nil {
			t.Fatalf("canned line %q: %v", line, err)
		}

		if e, ok := parseLine(node, at, js); ok {
			events = append(events, e)
		}
	}

	return events
}

func cannedTimeline(t *testing.T) *timeline {
	t.Helper()

	return buildTimeline([]string{"cp1", "cp2", "cp3"},
		map[string]string{"cp1": "127.0.10.1", "cp2": "127.0.10.2", "cp3": "127.0.10.3"}, cannedEvents(t))
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		name string
		line string
		ok   bool
		want event
	}{
		{"transition", `{"from":"Scan","to":"Elect","event":"quorum_reached","msg":"state transition"}`, true,
			event{node: "n", at: time.Second, state: fsm.Elect, from: fsm.Scan, how: "quorum_reached"}},
		{"announce", `{"delay":3,"intent":2,"msg":"waiting before bootstrap"}`, true,
			event{node: "n", at: time.Second, mark: markAnnounce, label: "announce intent 2"}},
		{"lock", `{"is_leader":false,"reason":"locked to 127.0.10.2/ddbd343c#1","msg":"leader election complete"}`, true,
			event{node: "n", at: time.Second, mark: markLock, label: "lock to 127.0.10.2 intent 1"}},
		{"bootstrap", `{"intent":3,"msg":"executing bootstrap"}`, true,
			event{node: "n", at: time.Second, mark: markBootstrap, label: "Bootstrap intent 3"}},
		{"the leader's own election is no lock", `{"is_leader":true,"reason":"ranked first of 3: announced intent 1","msg":"leader election complete"}`, false, event{}},
		{"a follow without a lock", `{"is_leader":false,"reason":"a cluster exists (x)","msg":"leader election complete"}`, false, event{}},
		{"other message", `{"msg":"waiting for quorum"}`, false, event{}},
		{"not JSON", `panic: boom`, false, event{}},
	}

	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseLine("n", time.Second, tt.line)
			if ok != tt.ok || got != tt.want {
				t.Fatalf("parseLine = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestLockTarget(t *testing.T) {
	for reason, want := range map[string]string{
		"locked to 127.0.10.2/ddbd343c#1":                         "127.0.10.2 intent 1",
		"released x; locked to 10.0.0.5/0011aabb#4":               "10.0.0.5 intent 4",
		"locked to 10.0.0.5/0011aabb#4: a cluster exists (y)":     "10.0.0.5 intent 4",
		"waiting for the leader; locked to fd00::5/0011aabb#2 ok": "fd00::5 intent 2",
	} {
		if got := lockTarget(reason); got != want {
			t.Errorf("lockTarget(%q) = %q, want %q", reason, got, want)
		}
	}
}

func TestBuildTimelineStatesAndMarks(t *testing.T) {
	tl := cannedTimeline(t)

	wantStates := map[string][]fsm.State{
		"cp1": {fsm.Detect, fsm.Credentials, fsm.Connect, fsm.Scan, fsm.Elect, fsm.FollowerWait, fsm.Scan, fsm.Elect, fsm.FollowerWait, fsm.Done},
		"cp2": {fsm.Detect, fsm.Credentials, fsm.Connect, fsm.Scan, fsm.Elect, fsm.LeaderDelay, fsm.Bootstrap, fsm.AwaitEtcd, fsm.Done},
		"cp3": {fsm.Detect, fsm.Credentials, fsm.Connect, fsm.Scan, fsm.Elect, fsm.Scan, fsm.Elect, fsm.FollowerWait, fsm.Done},
	}
	wantMarks := map[string][]mark{
		"cp1": {{markLock, 6300 * time.Millisecond, "lock to 127.0.10.2 intent 1"}}, // its second lock line is the same lock
		"cp2": {{markAnnounce, 6 * time.Second, "announce intent 1"}, {markBootstrap, 9 * time.Second, "Bootstrap intent 1"}},
		"cp3": {{markLock, 6100 * time.Millisecond, "lock to 127.0.10.2 intent 1"}},
	}
	wantRoles := map[string]string{"cp1": "follower", "cp2": "leader", "cp3": "follower"}

	if len(tl.lanes) != 3 || tl.end != 14400*time.Millisecond {
		t.Fatalf("lanes %d, end %s; want 3 lanes ending at 14.4s", len(tl.lanes), tl.end)
	}

	for i, l := range tl.lanes {
		if want := []string{"cp1", "cp2", "cp3"}[i]; l.node != want {
			t.Fatalf("lane %d is %s, want %s", i, l.node, want)
		}

		var states []fsm.State

		for j, s := range l.spans {
			states = append(states, s.state)

			if j > 0 && l.spans[j-1].end != s.start {
				t.Errorf("%s: span %s starts at %s, the one before ends at %s", l.node, s.state, s.start, l.spans[j-1].end)
			}
		}

		if !slices.Equal(states, wantStates[l.node]) {
			t.Errorf("%s states %v, want %v", l.node, states, wantStates[l.node])
		}

		if !slices.Equal(l.marks, wantMarks[l.node]) {
			t.Errorf("%s marks %+v, want %+v", l.node, l.marks, wantMarks[l.node])
		}

		if l.role() != wantRoles[l.node] {
			t.Errorf("%s role %q, want %q", l.node, l.role(), wantRoles[l.node])
		}

		if last := l.spans[len(l.spans)-1]; last.end != tl.end {
			t.Errorf("%s: last span ends at %s, want the timeline's end %s", l.node, last.end, tl.end)
		}
	}

	if s := tl.lanes[1].spans[0]; s.start != 2900*time.Millisecond {
		t.Errorf("cp2 entered Detect at %s, want its first line's time 2.9s", s.start)
	}
}

func TestBuildTimelineWorkerAndSilentNode(t *testing.T) {
	events := []event{
		{node: "w1", at: time.Second, state: fsm.Credentials, from: fsm.Detect, how: "secrets_missing"},
		{node: "w1", at: time.Second, state: fsm.Connect, from: fsm.Credentials, how: "credentials_ready"},
		{node: "w1", at: 2 * time.Second, state: fsm.Done, from: fsm.Connect, how: string(fsm.WorkerDetected)},
		{node: "stranger", at: 9 * time.Second, state: fsm.Scan, from: fsm.Connect},
	}

	tl := buildTimeline([]string{"w1", "cp9"}, nil, events)

	if tl.end != 2*time.Second {
		t.Errorf("end %s: an event of a node not in the list must not count", tl.end)
	}

	if got := tl.lanes[0].role(); got != "worker" {
		t.Errorf("w1 role %q, want worker", got)
	}

	if got := tl.text(); got != "w1                worker\n     1.0s  Detect → Credentials → Connect\n     2.0s  Done\ncp9\n  (no state transitions logged)\n" {
		t.Errorf("text:\n%s", got)
	}
}

func TestTimelineText(t *testing.T) {
	want := `cp1  127.0.10.1   follower
     2.3s  Detect → Credentials → Connect → Scan
     6.3s  Elect → FollowerWait   ● lock to 127.0.10.2 intent 1
     8.3s  Scan → Elect → FollowerWait
    14.4s  Done
cp2  127.0.10.2   leader
     2.9s  Detect → Credentials → Connect → Scan
     6.0s  Elect → LeaderDelay   ▲ announce intent 1
     9.0s  Bootstrap → AwaitEtcd   ★ Bootstrap intent 1
    11.0s  Done
cp3  127.0.10.3   follower
     4.0s  Detect → Credentials → Connect → Scan → Elect
     6.1s  Scan → Elect → FollowerWait   ● lock to 127.0.10.2 intent 1
    14.1s  Done
`

	if got := cannedTimeline(t).text(); got != want {
		t.Errorf("text:\n%s\nwant:\n%s", got, want)
	}
}

// svgElement is an element of the SVG with the attributes the test reads.
type svgElement struct {
	name, class, node, state, kind string
	lane                           string // the data-node of the enclosing lane
}

func parseSVG(t *testing.T, doc string) []svgElement {
	t.Helper()

	dec := xml.NewDecoder(strings.NewReader(doc))

	var (
		out   []svgElement
		lanes []string // a stack: the lane each open element is in
	)

	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}

		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}

		switch tok := tok.(type) {
		case xml.StartElement:
			e := svgElement{name: tok.Name.Local}

			if len(lanes) > 0 {
				e.lane = lanes[len(lanes)-1]
			}

			for _, a := range tok.Attr {
				switch a.Name.Local {
				case "class":
					e.class = a.Value
				case "data-node":
					e.node = a.Value
				case "data-state":
					e.state = a.Value
				case "data-kind":
					e.kind = a.Value
				}
			}

			if e.class == "lane" {
				e.lane = e.node
			}

			lanes = append(lanes, e.lane)
			out = append(out, e)
		case xml.EndElement:
			lanes = lanes[:len(lanes)-1]
		}
	}

	return out
}

func TestTimelineSVG(t *testing.T) {
	tl := cannedTimeline(t)
	doc := tl.svg("demo & test")

	if doc != tl.svg("demo & test") {
		t.Fatal("two renderings of the same timeline differ")
	}

	var (
		lanes  []string
		states = map[string][]fsm.State{}
		marks  = map[string][]markKind{}
	)

	for _, e := range parseSVG(t, doc) {
		switch {
		case e.class == "lane":
			lanes = append(lanes, e.node)
		case e.class == "span":
			states[e.lane] = append(states[e.lane], fsm.State(e.state))
		case e.class == "mark":
			marks[e.lane] = append(marks[e.lane], markKind(e.kind))
		}
	}

	if want := []string{"cp1", "cp2", "cp3"}; !slices.Equal(lanes, want) {
		t.Fatalf("lanes %v, want one per node %v", lanes, want)
	}

	for _, l := range tl.lanes {
		var want []fsm.State
		for _, s := range l.spans {
			want = append(want, s.state)
		}

		if !slices.Equal(states[l.node], want) {
			t.Errorf("%s: rects %v, want one per span %v", l.node, states[l.node], want)
		}

		var wantMarks []markKind
		for _, m := range l.marks {
			wantMarks = append(wantMarks, m.kind)
		}

		if !slices.Equal(marks[l.node], wantMarks) {
			t.Errorf("%s: marks %v, want %v", l.node, marks[l.node], wantMarks)
		}
	}

	for _, s := range []string{"seconds since the demo started", ">14s<", "demo &amp; test", `fill="` + colourOf(fsm.LeaderDelay) + `"`} {
		if !strings.Contains(doc, s) {
			t.Errorf("the SVG lacks %q", s)
		}
	}
}

func TestStatesUsedAndColours(t *testing.T) {
	tl := &timeline{lanes: []*lane{{spans: []span{{state: "Mystery"}, {state: fsm.Done}, {state: fsm.Detect}}}}}

	if got, want := tl.statesUsed(), []fsm.State{fsm.Detect, fsm.Done, "Mystery"}; !slices.Equal(got, want) {
		t.Errorf("statesUsed %v, want %v", got, want)
	}

	seen := map[string]fsm.State{}
	for _, c := range stateColours {
		if other, ok := seen[c.colour]; ok || c.colour == otherColour {
			t.Errorf("%s shares colour %s with %q", c.state, c.colour, other)
		}

		seen[c.colour] = c.state
	}
}

func TestTickStep(t *testing.T) {
	for end, want := range map[time.Duration]time.Duration{
		5 * time.Second:   time.Second,
		12 * time.Second:  time.Second,
		14 * time.Second:  2 * time.Second,
		50 * time.Second:  5 * time.Second,
		170 * time.Second: 15 * time.Second,
	} {
		if got := tickStep(end); got != want {
			t.Errorf("tickStep(%s) = %s, want %s", end, got, want)
		}
	}
}

func TestProblem(t *testing.T) {
	for line, want := range map[string]string{
		`{"level":"info","msg":"waiting for quorum"}`:                                            "",
		`{"level":"warn","state":"Scan","error":"dial: refused","msg":"state failed, retrying"}`: "warn: state failed, retrying: dial: refused",
		`{"level":"error","msg":"bootstrap service failed"}`:                                     "error: bootstrap service failed",
		`panic: runtime error`: "panic: runtime error",
	} {
		if got := problem(line); got != want {
			t.Errorf("problem(%s) = %q, want %q", line, got, want)
		}
	}
}
