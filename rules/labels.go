package rules

import (
	"fmt"
	"sort"
	"strings"

	"github.com/dockmoat/dockmoat/config"
)

// LabelComponent marks dockmoat's own containers (the daemon's task or
// sidecar, an audit job): host-network containers that publish nothing,
// which audit does not list as host-network exposure.
const LabelComponent = "io.dockmoat.component"

// Label keys.
const (
	LabelPrefix  = "dockmoat."
	LabelAllow   = "dockmoat.allow"
	LabelFrom    = "dockmoat.from"
	labelPortPfx = "dockmoat.allow."
)

// Problem is something wrong with a container's dockmoat labels. A Fatal
// problem keeps the whole container closed; the others are hints.
type Problem struct {
	Container string
	Label     string
	Value     string
	Msg       string
	Fatal     bool
}

func (p Problem) String() string {
	if p.Container == "-" { // a host-level problem, not a container's label
		return fmt.Sprintf("%s %s: %s", p.Label, p.Value, p.Msg)
	}
	who := "container " + p.Container
	if strings.HasPrefix(p.Container, "service ") { // a Swarm service's own label
		who = p.Container
	}
	s := fmt.Sprintf("%s: label %s=%q: %s", who, p.Label, ShortValue(p.Value), p.Msg)
	if p.Fatal {
		s += "; all its published ports stay closed until the label is fixed"
	}
	return s
}

// grant is one thing that opens ports: a label entry or a config rule.
type grant struct {
	spec    config.PortSpec
	sources config.Sources
	// perPort grants (dockmoat.allow.<port> labels) override the
	// dockmoat.allow/dockmoat.from grants for their ports.
	perPort bool
	// fromConfig grants come from the config file and always add up.
	fromConfig bool
	origin     string // for humans: which label or config rule opened it
}

// labelReader gathers what a container's dockmoat.* labels say, key by
// key (parseLabels).
type labelReader struct {
	c        Container
	lists    map[string][]config.Source
	problems []Problem
	allow    []config.PortSpec
	from     config.Sources
	hasAllow bool
	hasFrom  bool
	perPort  []grant
	limits   []limiter
}

// parseLabels turns a container's dockmoat.* labels into grants. Any
// invalid label makes it return no grants at all: a half-understood policy
// must not open anything.
func parseLabels(c Container, lists map[string][]config.Source) ([]grant, []limiter, []Problem) {
	keys := make([]string, 0, len(c.Labels))
	for k := range c.Labels {
		// Any letter case: `Dockmoat.from` is a typo of a restriction,
		// and ignoring it would open the port wider than the user meant.
		if hasLabelPrefix(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	r := &labelReader{c: c, lists: lists, from: config.Sources{Any: true}}
	for _, k := range keys {
		r.read(k, c.Labels[k])
	}
	if r.hasFrom && !r.hasAllow {
		r.bad(LabelFrom, "dockmoat.from restricts the ports in dockmoat.allow, but dockmoat.allow is not set")
	}
	if len(r.problems) > 0 {
		return nil, nil, r.problems
	}
	var grants []grant
	for _, spec := range r.allow {
		origin := "label " + LabelAllow + "=" + c.Labels[LabelAllow]
		if r.hasFrom {
			origin += " with " + LabelFrom + "=" + c.Labels[LabelFrom]
		}
		grants = append(grants, grant{spec: spec, sources: r.from, origin: origin})
	}
	return append(grants, r.perPort...), r.limits, nil
}

// bad records an invalid label: the container stays closed.
func (r *labelReader) bad(k, msg string) {
	r.problems = append(r.problems, Problem{Container: r.c.Name, Label: k, Value: r.c.Labels[k], Msg: msg, Fatal: true})
}

// read takes one label.
func (r *labelReader) read(k, v string) {
	var err error
	switch {
	case k == LabelEgress || k == LabelEgressAllow:
		return // egress.go
	case k == LabelAllow:
		r.allow, err = config.ParsePortList(v)
		r.hasAllow = err == nil
	case k == LabelFrom:
		r.from, err = config.ParseSourcesIn(v, r.lists)
		r.hasFrom = err == nil
	case strings.HasPrefix(k, labelPortPfx):
		r.readPerPort(k, v)
		return
	case strings.HasPrefix(k, labelLimitPfx):
		var l limiter
		if l, err = parseLimitLabel(k, v); err == nil {
			r.limits = append(r.limits, l)
		}
	default:
		r.bad(k, unknownKey(k))
		return
	}
	if err != nil {
		r.bad(k, err.Error())
	}
}

// readPerPort takes a dockmoat.allow.PORT label.
func (r *labelReader) readPerPort(k, v string) {
	spec, err := config.ParsePortSpec(strings.TrimPrefix(k, labelPortPfx))
	if err != nil {
		r.bad(k, "the key must name one port or range, as in dockmoat.allow.8080/tcp: "+err.Error())
		return
	}
	if spec.All {
		r.bad(k, "use dockmoat.allow=* with dockmoat.from for all ports; per-port keys name a port or range")
		return
	}
	srcs, err := config.ParseSourcesIn(v, r.lists)
	if err != nil {
		r.bad(k, err.Error())
		return
	}
	r.perPort = append(r.perPort, grant{spec: spec, sources: srcs, perPort: true, origin: "label " + k + "=" + v})
}

// hasLabelPrefix reports whether a label key is meant for dockmoat: it
// starts with "dockmoat." in any letter case.
func hasLabelPrefix(k string) bool {
	return len(k) >= len(LabelPrefix) && strings.EqualFold(k[:len(LabelPrefix)], LabelPrefix)
}

// unknownKey explains a dockmoat label key that is not a known one, with
// the key the user probably meant when only the letter case differs.
func unknownKey(k string) string {
	msg := "unknown dockmoat label"
	lower := strings.ToLower(k)
	switch {
	case lower == LabelAllow || lower == LabelFrom || lower == LabelEgress || lower == LabelEgressAllow:
		msg = "label keys are case-sensitive: did you mean " + lower + "?"
	case strings.HasPrefix(lower, labelPortPfx):
		msg = "label keys are case-sensitive: did you mean " + labelPortPfx + k[len(labelPortPfx):] + "?"
	case strings.HasPrefix(lower, labelLimitPfx):
		msg = "label keys are case-sensitive: did you mean " + labelLimitPfx + k[len(labelLimitPfx):] + "?"
	}
	return msg + "; known: dockmoat.allow, dockmoat.from, dockmoat.allow.<port>[/<proto>], dockmoat.limit.<port>[/<proto>], dockmoat.egress, dockmoat.egress.allow"
}

// ShortValue cuts a label value for a log line: a from list of thousands
// of sources must not make a megabyte-long line.
func ShortValue(v string) string {
	const max = 160
	if len(v) <= max {
		return v
	}
	return fmt.Sprintf("%s… (%d bytes)", v[:max], len(v))
}
