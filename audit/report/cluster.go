package report

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// NodeReport is one Swarm node's audit, as its task printed it.
type NodeReport struct {
	Node   string `json:"node"`
	Report Report `json:"report"`
	// Err says why there is no report for the node (its task failed,
	// printed no JSON, or never ran); such a node counts as not audited.
	Err string `json:"error,omitempty"`
}

// ClusterReport is `dockmoat audit --swarm`: one report per node.
type ClusterReport struct {
	Nodes []NodeReport `json:"nodes"`
}

// Beyond reports whether a port on any node is reachable beyond its policy.
func (c ClusterReport) Beyond() bool {
	return slices.ContainsFunc(c.Nodes, func(n NodeReport) bool { return n.Report.Beyond() })
}

// Incomplete reports whether some node could not be audited.
func (c ClusterReport) Incomplete() bool {
	return slices.ContainsFunc(c.Nodes, func(n NodeReport) bool { return n.Err != "" })
}

// ParseNodeReport reads what a node's `dockmoat audit --format json`
// printed; anything else there (a log line before the JSON) is skipped.
func ParseNodeReport(node string, out []byte) NodeReport {
	nr := NodeReport{Node: node}
	start := strings.IndexByte(string(out), '{')
	if start < 0 {
		nr.Err = "no report: " + firstLine(string(out))
		return nr
	}
	if err := json.NewDecoder(strings.NewReader(string(out[start:]))).Decode(&nr.Report); err != nil {
		nr.Err = fmt.Sprintf("unreadable report: %v", err)
	}
	return nr
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if s == "" {
		return "the task printed nothing"
	}
	return s
}

// WriteClusterJSON writes the cluster report for scripts.
func WriteClusterJSON(w io.Writer, c ClusterReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	for i := range c.Nodes {
		if c.Nodes[i].Report.Rows == nil {
			c.Nodes[i].Report.Rows = []Row{}
		}
		if c.Nodes[i].Report.Findings == nil {
			c.Nodes[i].Report.Findings = []string{}
		}
	}
	return enc.Encode(c)
}

// WriteClusterTable writes one table for the cluster: each node's state
// and findings, then every port with a NODE column.
func WriteClusterTable(w io.Writer, c ClusterReport) error {
	var b strings.Builder
	b.WriteString("dockmoat audit --swarm\n")
	nodeW, nameW, pubW := len("NODE"), len("CONTAINER"), len("PUBLISHED")
	for _, n := range c.Nodes {
		state := "PROTECTED"
		switch {
		case n.Err != "":
			state = "NOT AUDITED: " + n.Err
		case !n.Report.Protected:
			state = "NOT PROTECTED"
		}
		b.WriteString(wrap(fmt.Sprintf("%s: %s", n.Node, state), "    ", 80))
		for _, f := range n.Report.Findings {
			b.WriteString(wrap("  - "+f, "    ", 80))
		}
		nodeW = max(nodeW, min(len(n.Node), 16))
		for _, row := range n.Report.Rows {
			nameW = max(nameW, min(len(row.Container), 20))
			pubW = max(pubW, len(published(row)))
		}
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "%-*s  %-*s  %-*s  %-10s  %s\n", nodeW, "NODE", nameW, "CONTAINER", pubW, "PUBLISHED", "EXPOSURE", "INTENDED")
	for _, n := range c.Nodes {
		for _, row := range n.Report.Rows {
			fmt.Fprintf(&b, "%-*s  %-*s  %-*s  %-10s  %s\n", nodeW, clip(n.Node, 16), nameW, clip(row.Container, 20),
				pubW, published(row), row.Exposure, intendedMark(row))
			rowDetail(&b, row)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "~"
	}
	return s
}

func intendedMark(row Row) string {
	switch {
	case row.Beyond:
		return "NO: beyond policy"
	case !row.Intended:
		return "no"
	}
	return "yes"
}
