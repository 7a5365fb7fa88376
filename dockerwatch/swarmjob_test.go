package dockerwatch

import (
	"slices"
	"testing"

	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/swarm"
)

// The audit job is the dockmoat service's task with another command: same
// image, mounts, configs, capabilities and networks (so each node's job
// sees what its dockmoat sees), run once per node, never restarted, no
// health check, and the service itself untouched.
func TestJobSpecCopiesTheService(t *testing.T) {
	cs := &swarm.ContainerSpec{Image: "dockmoat:1", Args: []string{"run"}, CapabilityAdd: []string{"NET_ADMIN"},
		Mounts:  []mount.Mount{{Type: mount.TypeBind, Source: "/var/run/docker.sock", Target: "/var/run/docker.sock"}},
		Configs: []*swarm.ConfigReference{{ConfigName: "config"}}}
	like := swarm.ServiceSpec{Annotations: swarm.Annotations{Name: "dockmoat_dockmoat"},
		TaskTemplate: swarm.TaskSpec{ContainerSpec: cs, Networks: []swarm.NetworkAttachmentConfig{{Target: "host"}}},
		Mode:         swarm.ServiceMode{Global: &swarm.GlobalService{}}}
	spec, err := jobSpec(like, "dockmoat-audit-1", []string{"audit", "--format", "json"})
	if err != nil {
		t.Fatal(err)
	}
	got := spec.TaskTemplate.ContainerSpec
	if spec.Name != "dockmoat-audit-1" || spec.Mode.GlobalJob == nil || spec.Mode.Global != nil ||
		got.Image != "dockmoat:1" || !slices.Equal(got.Args, []string{"audit", "--format", "json"}) ||
		len(got.Mounts) != 1 || len(got.Configs) != 1 || got.CapabilityAdd[0] != "NET_ADMIN" ||
		spec.TaskTemplate.Networks[0].Target != "host" || got.Healthcheck == nil || got.Healthcheck.Test[0] != "NONE" ||
		spec.TaskTemplate.RestartPolicy.Condition != swarm.RestartPolicyConditionNone {
		t.Errorf("job spec %+v / %+v", spec, got)
	}
	if !slices.Equal(cs.Args, []string{"run"}) {
		t.Errorf("the service's own spec changed: %v", cs.Args)
	}
}
