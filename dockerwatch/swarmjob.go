package dockerwatch

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/client"

	"github.com/dockmoat/dockmoat/rules"
)

// JobAPI is the slice of the Docker client a Swarm manager needs to run
// one command on every node (`dockmoat audit --swarm`).
type JobAPI interface {
	ServiceInspect(ctx context.Context, serviceID string, options client.ServiceInspectOptions) (client.ServiceInspectResult, error)
	ServiceCreate(ctx context.Context, options client.ServiceCreateOptions) (client.ServiceCreateResult, error)
	ServiceRemove(ctx context.Context, serviceID string, options client.ServiceRemoveOptions) (client.ServiceRemoveResult, error)
	TaskList(ctx context.Context, options client.TaskListOptions) (client.TaskListResult, error)
	TaskLogs(ctx context.Context, taskID string, options client.TaskLogsOptions) (client.TaskLogsResult, error)
	NodeList(ctx context.Context, options client.NodeListOptions) (client.NodeListResult, error)
}

// NodeOutput is what a job printed on one node, or why it printed nothing.
type NodeOutput struct {
	Node   string // hostname
	Stdout []byte
	Err    string
}

// RunOnEveryNode runs args as a global job (Swarm's run-once-per-node
// mode, Docker 20.10+) built from the service `like`: the same image,
// mounts, configs, capabilities and networks as the dockmoat service
// (so a node's job sees what its dockmoat task sees), with args instead
// of its command and no health check or restarts. It waits for every
// task, collects each node's standard output, and removes the job. Nodes
// that ran no task (down, drained) are reported with the reason.
// progress, if not nil, hears how many tasks have ended, of how many, each
// time that changes.
func RunOnEveryNode(ctx context.Context, api JobAPI, like, name string, args []string, timeout time.Duration, progress func(done, total int)) ([]NodeOutput, error) {
	svc, err := api.ServiceInspect(ctx, like, client.ServiceInspectOptions{})
	if err != nil {
		return nil, fmt.Errorf("finding service %s (deploy deploy/stack.yaml as stack dockmoat, or name the service with --service): %w", like, err)
	}
	spec, err := jobSpec(svc.Service.Spec, name, args)
	if err != nil {
		return nil, err
	}
	created, err := api.ServiceCreate(ctx, client.ServiceCreateOptions{Spec: spec})
	if err != nil {
		return nil, fmt.Errorf("creating the job %s: %w", name, err)
	}
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = api.ServiceRemove(rctx, created.ID, client.ServiceRemoveOptions{})
	}()
	tasks, err := waitTasks(ctx, api, created.ID, timeout, progress)
	if err != nil {
		return nil, err
	}
	return collect(ctx, api, tasks)
}

// jobSpec turns the dockmoat service's spec into a global job's.
func jobSpec(like swarm.ServiceSpec, name string, args []string) (swarm.ServiceSpec, error) {
	if like.TaskTemplate.ContainerSpec == nil {
		return swarm.ServiceSpec{}, fmt.Errorf("service %s runs no container", like.Name)
	}
	cs := *like.TaskTemplate.ContainerSpec
	cs.Args = slices.Clone(args)
	cs.Healthcheck = &container.HealthConfig{Test: []string{"NONE"}}
	cs.Labels = maps.Clone(cs.Labels)
	if cs.Labels == nil {
		cs.Labels = map[string]string{}
	}
	cs.Labels[rules.LabelComponent] = "audit"
	tt := like.TaskTemplate
	tt.ContainerSpec = &cs
	tt.RestartPolicy = &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone}
	return swarm.ServiceSpec{
		Annotations:  swarm.Annotations{Name: name, Labels: map[string]string{"io.dockmoat.job": "audit"}},
		TaskTemplate: tt,
		Mode:         swarm.ServiceMode{GlobalJob: &swarm.GlobalJob{}},
	}, nil
}

func terminal(s swarm.TaskState) bool {
	switch s {
	case swarm.TaskStateComplete, swarm.TaskStateFailed, swarm.TaskStateRejected, swarm.TaskStateShutdown, swarm.TaskStateOrphaned:
		return true
	}
	return false
}

// waitTasks waits until the job has tasks and every one has ended; at
// the timeout it returns what there is (collect names the unfinished).
func waitTasks(ctx context.Context, api JobAPI, id string, timeout time.Duration, progress func(done, total int)) ([]swarm.Task, error) {
	deadline := time.Now().Add(timeout)
	last := -1
	for {
		res, err := api.TaskList(ctx, client.TaskListOptions{Filters: client.Filters{}.Add("service", id)})
		if err != nil {
			return nil, fmt.Errorf("listing the job's tasks: %w", err)
		}
		ended := 0
		for _, t := range res.Items {
			if terminal(t.Status.State) {
				ended++
			}
		}
		if progress != nil && len(res.Items) > 0 && ended != last {
			progress(ended, len(res.Items))
			last = ended
		}
		done := len(res.Items) > 0 && ended == len(res.Items)
		if done || (time.Now().After(deadline) && len(res.Items) > 0) {
			return res.Items, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the job started no task within %s", timeout)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// collect reads each task's standard output, by node hostname, and adds
// the ready nodes that ran none.
func collect(ctx context.Context, api JobAPI, tasks []swarm.Task) ([]NodeOutput, error) {
	nodes, err := api.NodeList(ctx, client.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing nodes: %w", err)
	}
	host := map[string]string{}
	for _, n := range nodes.Items {
		host[n.ID] = n.Description.Hostname
	}
	var out []NodeOutput
	ran := map[string]bool{}
	for _, t := range latestPerNode(tasks) {
		ran[t.NodeID] = true
		no := NodeOutput{Node: host[t.NodeID]}
		if no.Node == "" {
			no.Node = t.NodeID
		}
		switch {
		case !terminal(t.Status.State):
			no.Err = fmt.Sprintf("its audit did not finish in time (task %s)", t.Status.State)
		case t.Status.State == swarm.TaskStateRejected:
			no.Err = "task rejected: " + t.Status.Err
		default:
			if no.Stdout, err = taskStdout(ctx, api, t.ID); err != nil {
				no.Err = err.Error()
			}
		}
		out = append(out, no)
	}
	for _, n := range nodes.Items {
		if !ran[n.ID] {
			why := fmt.Sprintf("no task ran there (node %s, availability %s)", n.Status.State, n.Spec.Availability)
			out = append(out, NodeOutput{Node: n.Description.Hostname, Err: why})
		}
	}
	slices.SortFunc(out, func(a, b NodeOutput) int { return cmp.Compare(a.Node, b.Node) })
	return out, nil
}

func taskStdout(ctx context.Context, api JobAPI, id string) ([]byte, error) {
	rc, err := api.TaskLogs(ctx, id, client.TaskLogsOptions{ShowStdout: true})
	if err != nil {
		return nil, fmt.Errorf("reading the task's output: %w", err)
	}
	defer rc.Close()
	var stdout, stderr bytes.Buffer
	if _, err := stdcopy.StdCopy(&stdout, &stderr, rc); err != nil {
		return nil, fmt.Errorf("reading the task's output: %w", err)
	}
	return stdout.Bytes(), nil
}

// latestPerNode keeps each node's newest task: a job's task that failed
// may have been run again.
func latestPerNode(tasks []swarm.Task) []swarm.Task {
	latest := map[string]swarm.Task{}
	for _, t := range tasks {
		if l, ok := latest[t.NodeID]; !ok || t.CreatedAt.After(l.CreatedAt) {
			latest[t.NodeID] = t
		}
	}
	out := slices.Collect(maps.Values(latest))
	slices.SortFunc(out, func(a, b swarm.Task) int { return cmp.Compare(a.NodeID, b.NodeID) })
	return out
}
