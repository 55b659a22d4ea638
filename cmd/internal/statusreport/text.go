package statusreport

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText prints the table and the verdict for a person.
func WriteText(w io.Writer, r Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)

	fmt.Fprintln(tw, "NODE\tBOOT TIME\tRANK\tPHASE\tLOCK\tINTENT\tQUORUM\tORDER\tETCD\tSTATE\tREASON")

	for _, row := range r.Rows {
		boot, rank, intent, quorum := "-", "-", "-", "-"

		if !row.BootTime.IsZero() {
			boot = row.BootTime.UTC().Format(time.RFC3339)
		}

		if row.Rank != 0 {
			rank = fmt.Sprint(row.Rank)
		}

		if row.Phase != "" {
			intent = fmt.Sprint(row.Intent)
			quorum = fmt.Sprint(row.Quorum)
		}

		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Node, boot, rank, dash(row.Phase), dash(row.Lock),
			intent, quorum, dash(row.LeaderOrder), dash(row.Etcd), row.State, oneLine(cmp.Or(row.Error, row.Reason)))
	}

	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}

	var b strings.Builder

	v := r.Verdict
	fmt.Fprintf(&b, "\nVerdict: %s: %s\n", strings.ToUpper(v.State), v.Summary)

	if len(v.EtcdClusters) > 0 {
		b.WriteString("\nEtcd clusters, by the nodes' member lists:\n")

		for _, c := range v.EtcdClusters {
			fmt.Fprintf(&b, "  %s: members %s\n", strings.Join(c.Nodes, ", "), strings.Join(c.Members, ", "))
		}
	}

	if len(v.Blockers) > 0 {
		b.WriteString("\nBlocked by:\n")

		for _, bl := range v.Blockers {
			fmt.Fprintf(&b, "  - [%s] %s\n", bl.Kind, bl.Detail)
		}
	}

	if len(v.BreakLocks) > 0 {
		b.WriteString("\nEscape hatch, on each blocked node's ExtensionServiceConfig:\n")

		for _, bl := range v.BreakLocks {
			fmt.Fprintf(&b, "  %s:  %s\n      %s\n", bl.Node, bl.Line, bl.Conditions)
		}
	}

	if len(v.Notes) > 0 {
		b.WriteString("\nNotes:\n")

		for _, n := range v.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}

	var next []string

	for _, row := range r.Rows {
		if row.Next != "" {
			next = append(next, fmt.Sprintf("  %s: %s: %s\n", row.Node, row.Next, oneLine(row.NextReason)))
		}
	}

	if len(next) > 0 {
		b.WriteString("\nEach node's next step, by the election's rules:\n" + strings.Join(next, ""))
	}

	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write verdict: %w", err)
	}

	return nil
}

func dash(s string) string { return cmp.Or(s, "-") }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
