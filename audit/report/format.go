package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// WriteJSON writes the report for scripts.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if r.Rows == nil {
		r.Rows = []Row{}
	}
	if r.Findings == nil {
		r.Findings = []string{}
	}
	return enc.Encode(r)
}

// WriteTable writes the report for people, fitting 80 columns: problems
// first, each port on one line with its reason indented below.
func WriteTable(w io.Writer, r Report) error {
	var b strings.Builder
	state := "PROTECTED"
	if !r.Protected {
		state = "NOT PROTECTED"
	}
	fmt.Fprintf(&b, "dockmoat audit: %s\n", state)
	for _, f := range r.Findings {
		b.WriteString(wrap("  - "+f, "    ", 80))
	}
	b.WriteString("\n")
	if len(r.Rows) == 0 {
		b.WriteString("no published ports\n")
	}
	nameW, pubW := len("CONTAINER"), len("PUBLISHED")
	for _, row := range r.Rows {
		nameW = max(nameW, min(len(row.Container), 20))
		pubW = max(pubW, len(published(row)))
	}
	if len(r.Rows) > 0 {
		fmt.Fprintf(&b, "%-*s  %-*s  %-10s  %s\n", nameW, "CONTAINER", pubW, "PUBLISHED", "EXPOSURE", "INTENDED")
	}
	for _, row := range r.Rows {
		fmt.Fprintf(&b, "%-*s  %-*s  %-10s  %s\n", nameW, clip(row.Container, 20), pubW, published(row), row.Exposure, intendedMark(row))
		rowDetail(&b, row)
	}
	writeEgress(&b, r.Egress)
	_, err := io.WriteString(w, b.String())
	return err
}

// rowDetail writes the indented lines under a port's line: its sources
// when restricted, and the reason.
func rowDetail(b *strings.Builder, row Row) {
	if row.Exposure == Restricted {
		b.WriteString(wrap("    sources: "+strings.Join(row.Sources, ", "), "      ", 80))
	}
	b.WriteString(wrap("    "+row.Reason, "      ", 80))
}

func published(r Row) string {
	host := r.HostIP
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return fmt.Sprintf("%s:%d->%d/%s", host, r.HostPort, r.ContainerPort, r.Proto)
}

// wrap breaks s into lines of at most width, indenting continuations.
func wrap(s, indent string, width int) string {
	words := strings.Fields(s)
	var b strings.Builder
	line := ""
	lead := s[:len(s)-len(strings.TrimLeft(s, " "))]
	for _, w := range words {
		if line == "" {
			line = lead + w
			continue
		}
		if len(line)+1+len(w) > width {
			b.WriteString(line + "\n")
			line = indent + w
			continue
		}
		line += " " + w
	}
	if line != "" {
		b.WriteString(line + "\n")
	}
	return b.String()
}

// WriteExplain writes the paths of the explained rows: for each source
// class, the rules its first packet met, then the fix.
func WriteExplain(w io.Writer, rows []Row) error {
	var b strings.Builder
	for i, row := range rows {
		if i > 0 {
			b.WriteString("\n")
		}
		mark := "as intended"
		if row.Beyond {
			mark = "BEYOND POLICY"
		} else if !row.Intended {
			mark = "not as intended"
		}
		fmt.Fprintf(&b, "%s %s: %s, %s\n", row.Container, published(row), row.Exposure, mark)
		b.WriteString(wrap("  "+row.Reason, "    ", 80))
		for _, p := range row.Paths {
			from := "from " + p.Source
			if p.Needs != "" {
				from += ", sending " + p.Needs
			}
			fmt.Fprintf(&b, "  %s: %s\n", from, p.Result)
			for _, s := range p.Steps {
				b.WriteString(wrap("    "+s.Chain+": "+s.Rule, "        ", 80))
			}
		}
		if row.Fix != "" {
			b.WriteString(wrap("  fix: "+row.Fix, "    ", 80))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeEgress lists the deny containers and what a first packet out of
// them meets.
func writeEgress(b *strings.Builder, rows []EgressRow) {
	if len(rows) == 0 {
		return
	}
	b.WriteString("\nEGRESS (containers whose outbound connections are limited)\n")
	for _, e := range rows {
		mark := "enforced"
		if e.Beyond {
			mark = "NOT ENFORCED"
		}
		fmt.Fprintf(b, "%s (%s): %s\n", e.Container, e.Family, mark)
		b.WriteString(wrap("    policy: "+e.Policy, "      ", 80))
		if len(e.DNS) > 0 {
			b.WriteString(wrap("    dns: "+strings.Join(e.DNS, ", ")+" (53/udp, 53/tcp)", "      ", 80))
		}
		b.WriteString(wrap("    to the outside: "+e.Outside, "      ", 80))
		b.WriteString(wrap("    to the host: "+e.Host, "      ", 80))
	}
}
