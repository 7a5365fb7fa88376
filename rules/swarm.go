package rules

import (
	"maps"
	"slices"
)

// serviceProblems reports the dockmoat labels set on Swarm services
// themselves (`docker service create --label`, a stack's deploy.labels),
// which a manager's snapshot lists (Snapshot.ServiceLabels). They open
// nothing: a worker cannot read a service, so honouring them on managers
// would open a port on some nodes of the cluster and not on others. The
// problem names where the same policy works on every node.
func serviceProblems(snap Snapshot) []Problem {
	var out []Problem
	for _, svc := range slices.Sorted(maps.Keys(snap.ServiceLabels)) {
		labels := snap.ServiceLabels[svc]
		for _, k := range slices.Sorted(maps.Keys(labels)) {
			out = append(out, Problem{Container: "service " + svc, Label: k, Value: labels[k],
				Msg: "a Swarm service label, which only managers can read, so dockmoat does not use it (every node must apply the same policy); " +
					"for ports published in host mode set it as a container label (a stack's labels: beside deploy:, or " +
					"docker service update --container-label-add), for the routing mesh (ingress mode) use an allow rule " +
					"with service: " + svc + " in the config file"})
		}
	}
	return out
}
