package rules

import (
	"maps"
	"slices"
	"strings"

	"github.com/dockmoat/dockmoat/config"
)

// Image labels. Docker copies an image's LABELs into every container made
// from it, so an image published on a registry could carry
// dockmoat.allow=… and open whatever port the user publishes for it, or
// dockmoat.egress.allow=0.0.0.0/0 to void an egress deny. dockmoat obeys
// only what the user controls: labels set when the container is created,
// and the config file. The source (dockerwatch) moves a dockmoat label
// whose key and value equal the image's out of Container.Labels into
// Container.ImageLabels; config image_labels: trust puts them back
// (TrustImageLabels, at the top of policy.Build, so every caller gets it). A label the user sets at create with the very
// value the image has cannot be told from the image's (Docker keeps no
// origin): it is ignored too, and the message says how to open the port.

// IsOwnLabel reports whether a label key is dockmoat's (any letter case:
// a key in the wrong case is dockmoat's too, and an error elsewhere).
func IsOwnLabel(key string) bool {
	const component = "io.dockmoat."
	return hasLabelPrefix(key) || (len(key) >= len(component) && strings.EqualFold(key[:len(component)], component))
}

// TrustImageLabels returns snap with each container's image labels back
// among its labels when the config says image_labels: trust, and snap
// itself otherwise (idempotent: merged containers have none left). Merged containers get Rev 0, so that a policy memo
// compares their labels instead of trusting an unchanged revision.
func TrustImageLabels(cfg config.Config, snap Snapshot) Snapshot {
	if !cfg.TrustImageLabels || !slices.ContainsFunc(snap.Containers, func(c Container) bool { return len(c.ImageLabels) > 0 }) {
		return snap
	}
	out := snap
	out.Containers = slices.Clone(snap.Containers)
	for i := range out.Containers {
		c := &out.Containers[i]
		if len(c.ImageLabels) == 0 {
			continue
		}
		labels := maps.Clone(c.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, c.ImageLabels)
		c.Labels, c.ImageLabels, c.Rev = labels, nil, 0
	}
	return out
}

// imageLabelProblems reports each image label left unobeyed.
func imageLabelProblems(snap Snapshot) []Problem {
	var out []Problem
	for i := range snap.Containers {
		c := &snap.Containers[i] // by index: no copy of each container per pass
		if len(c.ImageLabels) == 0 {
			continue // most containers: no allocation per pass
		}
		for _, k := range slices.Sorted(maps.Keys(c.ImageLabels)) {
			out = append(out, Problem{Container: c.Name, Label: k, Value: c.ImageLabels[k],
				Msg: "comes from the container's image, so dockmoat ignores it (an image must not open its own ports); " +
					"to open the port, select the container in the config file (allow: - container: " + c.Name + "), " +
					"or set image_labels: trust there if you trust every image you run"})
		}
	}
	return out
}
