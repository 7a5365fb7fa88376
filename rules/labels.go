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

	var (
		problems []Problem
		allow    []config.PortSpec
		from     = config.Sources{Any: true}
		hasAllow bool
		hasFrom  bool
		perPort  []grant
		limits   []limiter
	)
	bad := func(k, msg string) {
		problems = append(problems, Problem{Container: c.Name, Label: k, Value: c.Labels[k], Msg: msg, Fatal: true})
	}
	for _, k := range keys {
		v := c.Labels[k]
		switch {
		case k == LabelEgress || k == LabelEgressAllow:
			continue // egress.go
		case k == LabelAllow:
			specs, err := config.ParsePortList(v)
			if err != nil {
				bad(k, err.Error())
				continue
			}
			allow, hasAllow = specs, true
		case k == LabelFrom:
			srcs, err := config.ParseSourcesIn(v, lists)
			if err != nil {
				bad(k, err.Error())
				continue
			}
			from, hasFrom = srcs, true
		case strings.HasPrefix(k, labelPortPfx):
			spec, err := config.ParsePortSpec(strings.TrimPrefix(k, labelPortPfx))
			if err != nil {
				bad(k, "the key must name one port or range, as in dockmoat.allow.8080/tcp: "+err.Error())
				continue
			}
			if spec.All {
				bad(k, "use dockmoat.allow=* with dockmoat.from for all ports; per-port keys name a port or range")
				continue
			}
			srcs, err := config.ParseSourcesIn(v, lists)
			if err != nil {
				bad(k, err.Error())
				continue
			}
			perPort = append(perPort, grant{spec: spec, sources: srcs, perPort: true, origin: "label " + k + "=" + v})
		case strings.HasPrefix(k, labelLimitPfx):
			l, err := parseLimitLabel(k, v)
			if err != nil {
				bad(k, err.Error())
				continue
			}
			limits = append(limits, l)
		default:
			bad(k, unknownKey(k))
		}
	}
	if hasFrom && !hasAllow {
		bad(LabelFrom, "dockmoat.from restricts the ports in dockmoat.allow, but dockmoat.allow is not set")
	}
	if len(problems) > 0 {
		return nil, nil, problems
	}
	var grants []grant
	for _, spec := range allow {
		origin := "label " + LabelAllow + "=" + c.Labels[LabelAllow]
		if hasFrom {
			origin += " with " + LabelFrom + "=" + c.Labels[LabelFrom]
		}
		grants = append(grants, grant{spec: spec, sources: from, origin: origin})
	}
	return append(grants, perPort...), limits, nil
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
