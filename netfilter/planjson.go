package netfilter

import (
	"strings"

	"github.com/dockmoat/dockmoat/rules"
)

// PlanJSON is one family's plan as `dockmoat plan --format json` prints
// it (docs/reference.md has the schema): the decisions and problems the
// text plan shows, the rules, and the changes a pass would make, worded
// as in the text.
type PlanJSON struct {
	Family   string       `json:"family"`
	Tool     string       `json:"tool"`
	Layer    bool         `json:"layer,omitempty"`
	Skipped  string       `json:"skipped,omitempty"`
	Note     string       `json:"note,omitempty"`
	InSync   bool         `json:"in_sync"`
	Ports    []PortJSON   `json:"ports"`
	Proxied  []PortJSON   `json:"proxied,omitempty"`
	Egress   []EgressJSON `json:"egress,omitempty"`
	Problems []string     `json:"problems,omitempty"`
	Rules    []string     `json:"rules,omitempty"`
	Changes  []string     `json:"changes,omitempty"`
}

// PortJSON is one published binding's decision.
type PortJSON struct {
	Container     string   `json:"container"`
	HostIP        string   `json:"host_ip"`
	HostPort      uint16   `json:"host_port"`
	ContainerPort uint16   `json:"container_port"`
	Proto         string   `json:"proto"`
	Open          bool     `json:"open"`
	Sources       []string `json:"sources,omitempty"` // open to these only; empty: to everyone
	Reason        string   `json:"reason"`
}

// EgressJSON is one deny container's outbound policy in the family.
type EgressJSON struct {
	Container string `json:"container"`
	Policy    string `json:"policy"`
}

// JSONPlan turns a plan into its JSON form.
func JSONPlan(p FamilyPlan) PlanJSON {
	out := PlanJSON{Family: p.Family.String(), Tool: p.Tool, Layer: p.Layer, Skipped: p.Skipped, Note: p.Note,
		InSync: p.InSync(), Ports: []PortJSON{}}
	if p.Skipped != "" {
		return out
	}
	for _, d := range p.Result.Decisions() {
		out.Ports = append(out.Ports, portJSON(d))
	}
	for _, d := range p.Result.Proxied {
		out.Proxied = append(out.Proxied, portJSON(d))
	}
	for _, e := range p.Result.Egress {
		out.Egress = append(out.Egress, EgressJSON{Container: e.Container, Policy: e.Describe()})
	}
	for _, pr := range p.Result.Problems {
		out.Problems = append(out.Problems, pr.String())
	}
	if p.Rules != nil {
		out.Rules = p.Rules.Lines()
	}
	if !p.InSync() {
		var b strings.Builder
		writeDiff(&b, p)
		for _, l := range strings.Split(b.String(), "\n")[1:] {
			if l = strings.TrimSpace(l); l != "" {
				out.Changes = append(out.Changes, l)
			}
		}
	}
	return out
}

func portJSON(d rules.Decision) PortJSON {
	j := PortJSON{Container: d.Container, HostPort: d.Binding.HostPort, ContainerPort: d.Binding.ContainerPort,
		Proto: d.Binding.Proto, Open: d.Open, Reason: d.Reason}
	if d.Binding.HostIP.IsValid() {
		j.HostIP = d.Binding.HostIP.String()
	}
	if d.Open && !d.Sources.Any {
		for _, s := range d.Sources.Prefixes {
			j.Sources = append(j.Sources, s.String())
		}
		for _, ifc := range d.Sources.Ifaces {
			j.Sources = append(j.Sources, "iface:"+ifc)
		}
	}
	return j
}
