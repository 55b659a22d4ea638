package main

import (
	"encoding/xml"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/kommodity-io/kommodity-autobootstrap-extension/fsm"
)

// stateColours gives every state of the daemon a fixed colour, in the order
// the legend lists them; a state not listed here is drawn in otherColour.
var stateColours = []struct {
	state  fsm.State
	colour string
}{
	{fsm.Detect, "#9e9e9e"},
	{fsm.Credentials, "#b0bec5"},
	{fsm.Connect, "#78909c"},
	{fsm.Scan, "#64b5f6"},
	{fsm.Elect, "#ffb74d"},
	{fsm.LeaderDelay, "#ba68c8"},
	{fsm.Bootstrap, "#e53935"},
	{fsm.AwaitEtcd, "#f06292"},
	{fsm.FollowerWait, "#4db6ac"},
	{fsm.Done, "#66bb6a"},
}

const otherColour = "#d7ccc8"

func colourOf(s fsm.State) string {
	for _, c := range stateColours {
		if c.state == s {
			return c.colour
		}
	}

	return otherColour
}

// The SVG's layout, in pixels.
const (
	svgWidth    = 960
	svgLeft     = 150 // lane titles
	svgRight    = 24
	svgTop      = 44
	laneHeight  = 52
	spanTop     = 22 // within a lane: mark labels above, the span bar below
	spanHeight  = 20
	charWidth   = 6.2 // estimated width of a character at font-size 11
	labelGap    = 6
	legendRowPx = 20
)

// tickStep picks a time-axis step that gives at most a dozen ticks.
func tickStep(end time.Duration) time.Duration {
	for _, s := range []int{1, 2, 5, 10, 15, 30, 60, 120, 300} {
		if end <= time.Duration(12*s)*time.Second {
			return time.Duration(s) * time.Second
		}
	}

	return 600 * time.Second
}

// svg renders the timeline as swimlanes: one lane per node, one rect per
// state span, a symbol and label per mark, a time axis in seconds and a
// legend of the states that occur. The output depends only on tl and title.
func (tl *timeline) svg(title string) string {
	step := tickStep(tl.end)
	axisEnd := time.Duration(math.Ceil(float64(tl.end)/float64(step))) * step
	axisEnd = max(axisEnd, step)
	plot := float64(svgWidth - svgLeft - svgRight)
	x := func(t time.Duration) float64 { return svgLeft + plot*float64(t)/float64(axisEnd) }

	axisY := svgTop + len(tl.lanes)*laneHeight + 6
	legendY := axisY + 48
	used := tl.statesUsed()
	height := legendY + legendRowPx*2 + 8

	var b strings.Builder

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		svgWidth, height, svgWidth, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", svgWidth, height)
	fmt.Fprintf(&b, `<text x="12" y="22" font-size="14" font-weight="bold">%s</text>`+"\n", esc(title))

	// Grid lines first, so spans and marks draw over them.
	for t := time.Duration(0); t <= axisEnd; t += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#eeeeee"/>`+"\n", x(t), svgTop, x(t), axisY)
	}

	for i, l := range tl.lanes {
		tl.svgLane(&b, l, svgTop+i*laneHeight, x)
	}

	fmt.Fprintf(&b, `<g class="axis"><line x1="%d" y1="%d" x2="%.1f" y2="%d" stroke="#424242"/>`+"\n", svgLeft, axisY, x(axisEnd), axisY)

	for t := time.Duration(0); t <= axisEnd; t += step {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#424242"/><text x="%.1f" y="%d" text-anchor="middle">%ds</text>`+"\n",
			x(t), axisY, x(t), axisY+5, x(t), axisY+18, int(t/time.Second))
	}

	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#616161">seconds since the demo started</text></g>`+"\n",
		svgLeft+plot/2, axisY+34)

	svgLegend(&b, used, legendY)
	b.WriteString("</svg>\n")

	return b.String()
}

func (tl *timeline) svgLane(b *strings.Builder, l *lane, y int, x func(time.Duration) float64) {
	fmt.Fprintf(b, `<g class="lane" data-node="%s">`+"\n", esc(l.node))
	fmt.Fprintf(b, `<text x="12" y="%d" font-weight="bold" font-size="13">%s</text>`+"\n", y+spanTop+14, esc(l.node))
	fmt.Fprintf(b, `<text x="48" y="%d" fill="#616161">%s</text>`+"\n", y+spanTop+14, esc(strings.TrimSpace(l.title+" "+l.role())))

	for _, s := range l.spans {
		x0, x1 := x(s.start), x(s.end)
		w := max(x1-x0, 1)
		fmt.Fprintf(b, `<rect class="span" data-state="%s" x="%.1f" y="%d" width="%.1f" height="%d" fill="%s" stroke="#ffffff" stroke-width="0.5"><title>%s %.1fs to %.1fs</title></rect>`+"\n",
			esc(string(s.state)), x0, y+spanTop, w, spanHeight, colourOf(s.state), esc(string(s.state)), s.start.Seconds(), s.end.Seconds())

		if name := string(s.state); w >= float64(len(name))*charWidth+8 {
			fmt.Fprintf(b, `<text x="%.1f" y="%d" fill="#ffffff">%s</text>`+"\n", x0+4, y+spanTop+14, esc(name))
		}
	}

	labelEnd := 0.0

	for _, m := range l.marks {
		mx := x(m.at)
		fmt.Fprintf(b, `<g class="mark" data-kind="%s">%s`, m.kind, markShape(m.kind, mx, float64(y+spanTop)))

		lx := max(mx-4, labelEnd+labelGap)
		labelEnd = lx + float64(len([]rune(m.label)))*charWidth
		fmt.Fprintf(b, `<text x="%.1f" y="%d">%s</text></g>`+"\n", lx, y+spanTop-8, esc(m.label))
	}

	b.WriteString("</g>\n")
}

// markShape draws a mark's symbol centred on (cx, cy): a triangle for an
// announce, a circle for a lock, a star for Bootstrap.
func markShape(k markKind, cx, cy float64) string {
	const style = ` stroke="#212121" stroke-width="1"`

	switch k {
	case markAnnounce:
		return fmt.Sprintf(`<polygon points="%.1f,%.1f %.1f,%.1f %.1f,%.1f" fill="#ffeb3b"%s/>`,
			cx, cy-6, cx-5, cy+4, cx+5, cy+4, style)
	case markLock:
		return fmt.Sprintf(`<circle cx="%.1f" cy="%.1f" r="4" fill="#ffffff"%s/>`, cx, cy, style)
	default:
		var pts []string

		for i := range 10 {
			r := 7.0
			if i%2 == 1 {
				r = 3.0
			}

			a := -math.Pi/2 + float64(i)*math.Pi/5
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", cx+r*math.Cos(a), cy+r*math.Sin(a)))
		}

		return fmt.Sprintf(`<polygon points="%s" fill="#ffd600"%s/>`, strings.Join(pts, " "), style)
	}
}

// svgLegend lists the states that occur, in the fixed order, then the marks.
func svgLegend(b *strings.Builder, states []fsm.State, y int) {
	b.WriteString(`<g class="legend">` + "\n")

	lx := float64(svgLeft)
	for _, s := range states {
		fmt.Fprintf(b, `<rect x="%.1f" y="%d" width="12" height="12" fill="%s"/><text x="%.1f" y="%d">%s</text>`+"\n",
			lx, y, colourOf(s), lx+16, y+10, esc(string(s)))
		lx += 16 + float64(len(s))*charWidth + 14
	}

	lx = svgLeft

	for _, m := range []struct {
		kind markKind
		text string
	}{
		{markAnnounce, "announce: the leader publishes its intent"},
		{markLock, "lock: a follower locks to that intent"},
		{markBootstrap, "Bootstrap sent"},
	} {
		fmt.Fprintf(b, `%s<text x="%.1f" y="%d">%s</text>`+"\n", markShape(m.kind, lx+6, float64(y+legendRowPx+6)), lx+16, y+legendRowPx+10, m.text)
		lx += 16 + float64(len(m.text))*charWidth + 24
	}

	b.WriteString("</g>\n")
}

// statesUsed lists the states that occur in the timeline: known ones in the
// legend's order, then others in the order they first appear.
func (tl *timeline) statesUsed() []fsm.State {
	seen := map[fsm.State]bool{}

	var other []fsm.State

	for _, l := range tl.lanes {
		for _, s := range l.spans {
			if !seen[s.state] && colourOf(s.state) == otherColour {
				other = append(other, s.state)
			}

			seen[s.state] = true
		}
	}

	var used []fsm.State

	for _, c := range stateColours {
		if seen[c.state] {
			used = append(used, c.state)
		}
	}

	return append(used, other...)
}

func esc(s string) string {
	var b strings.Builder

	_ = xml.EscapeText(&b, []byte(s)) // a strings.Builder never fails

	return b.String()
}
