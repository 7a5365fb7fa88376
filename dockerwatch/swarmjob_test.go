package dockerwatch

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"
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

type fakeJobs struct {
	JobAPI
	tasks []swarm.Task
	nodes []swarm.Node
	logs  map[string]string
}

func (f fakeJobs) NodeList(context.Context, client.NodeListOptions) (client.NodeListResult, error) {
	return client.NodeListResult{Items: f.nodes}, nil
}

func (f fakeJobs) TaskLogs(_ context.Context, id string, _ client.TaskLogsOptions) (client.TaskLogsResult, error) {
	var b bytes.Buffer
	frame(&b, stdcopy.Stdout, f.logs[id])
	frame(&b, stdcopy.Stderr, "level=warning msg=noise\n")
	return io.NopCloser(&b), nil
}

// frame writes one frame of Docker's multiplexed log stream.
func frame(b *bytes.Buffer, stream stdcopy.StdType, s string) {
	hdr := [8]byte{byte(stream)}
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(s)))
	b.Write(hdr[:])
	b.WriteString(s)
}

// Each node's output is its newest task's standard output; a node whose
// task did not finish, or that ran none, is named with the reason.
func TestCollectPerNode(t *testing.T) {
	node := func(id, host string) swarm.Node {
		n := swarm.Node{ID: id, Description: swarm.NodeDescription{Hostname: host}}
		n.Status.State, n.Spec.Availability = swarm.NodeStateReady, swarm.NodeAvailabilityActive
		return n
	}
	task := func(id, nodeID string, state swarm.TaskState, at time.Time) swarm.Task {
		tk := swarm.Task{ID: id, NodeID: nodeID, Status: swarm.TaskStatus{State: state}}
		tk.CreatedAt = at
		return tk
	}
	now := time.Now()
	f := fakeJobs{
		nodes: []swarm.Node{node("n1", "alpha"), node("n2", "beta"), node("n3", "gamma")},
		tasks: []swarm.Task{task("old", "n1", swarm.TaskStateFailed, now.Add(-time.Minute)), task("new", "n1", swarm.TaskStateComplete, now),
			task("slow", "n2", swarm.TaskStateRunning, now)},
		logs: map[string]string{"new": `{"protected":true}`, "old": "stale"},
	}
	out, err := collect(context.Background(), f, f.tasks)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 3 || out[0].Node != "alpha" || string(out[0].Stdout) != `{"protected":true}` || out[0].Err != "" ||
		out[1].Node != "beta" || !strings.Contains(out[1].Err, "did not finish") ||
		out[2].Node != "gamma" || !strings.Contains(out[2].Err, "no task ran there") {
		t.Errorf("collected %+v", out)
	}
}

// stepTasks lists the job's tasks a step further each time it is asked.
type stepTasks struct {
	JobAPI
	steps [][]swarm.TaskState
	n     *int
}

func (s stepTasks) TaskList(context.Context, client.TaskListOptions) (client.TaskListResult, error) {
	i := min(*s.n, len(s.steps)-1)
	*s.n++
	var out []swarm.Task
	for j, st := range s.steps[i] {
		out = append(out, swarm.Task{ID: string(rune('a' + j)), Status: swarm.TaskStatus{State: st}})
	}
	return client.TaskListResult{Items: out}, nil
}

// Progress is told each time the number of ended tasks changes, not on
// every poll.
func TestWaitTasksProgress(t *testing.T) {
	run, done := swarm.TaskStateRunning, swarm.TaskStateComplete
	n := 0
	api := stepTasks{steps: [][]swarm.TaskState{{run, run}, {run, run}, {done, run}, {done, done}}, n: &n}
	var heard []string
	tasks, err := waitTasks(context.Background(), api, "job", time.Minute, func(d, total int) { heard = append(heard, fmt.Sprintf("%d/%d", d, total)) })
	if err != nil || len(tasks) != 2 {
		t.Fatalf("tasks %v, err %v", tasks, err)
	}
	if !slices.Equal(heard, []string{"0/2", "1/2", "2/2"}) {
		t.Errorf("progress %v", heard)
	}
}
