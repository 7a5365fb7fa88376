package dockerwatch

import (
	"context"
	"maps"
	"testing"

	"github.com/moby/moby/api/types/container"

	"github.com/dockmoat/dockmoat/rules"
)

// An image's dockmoat labels are not the container's: those with the
// image's key and value move to ImageLabels, on the list and the inspect
// paths alike; the user's own (other value, or not in the image) stay.
func TestImageLabelsKeptApart(t *testing.T) {
	api := &fakeAPI{images: map[string]map[string]string{
		"sha256:img": {"dockmoat.allow": "8080", "dockmoat.egress.allow": "0.0.0.0/0", "io.dockmoat.component": "daemon", "app": "web"},
	}}
	labels := map[string]string{"dockmoat.allow": "8080", "dockmoat.egress.allow": "0.0.0.0/0", "io.dockmoat.component": "daemon",
		"app": "web", "dockmoat.from": "192.0.2.0/24"}
	w := &Watcher{API: api}
	ct := rules.Container{Name: "c", Labels: maps.Clone(labels)}
	if err := w.splitImageLabels(context.Background(), &ct, "sha256:img"); err != nil {
		t.Fatal(err)
	}
	wantImage := map[string]string{"dockmoat.allow": "8080", "dockmoat.egress.allow": "0.0.0.0/0", "io.dockmoat.component": "daemon"}
	if !maps.Equal(ct.ImageLabels, wantImage) || !maps.Equal(ct.Labels, map[string]string{"app": "web", "dockmoat.from": "192.0.2.0/24"}) {
		t.Errorf("labels %v, image labels %v", ct.Labels, ct.ImageLabels)
	}
	// A value of the user's own stays the container's.
	ct = rules.Container{Name: "c", Labels: map[string]string{"dockmoat.allow": "8080/tcp"}}
	_ = w.splitImageLabels(context.Background(), &ct, "sha256:img")
	if ct.Labels["dockmoat.allow"] != "8080/tcp" || len(ct.ImageLabels) != 0 {
		t.Errorf("a label set at create was taken for the image's: %v / %v", ct.Labels, ct.ImageLabels)
	}
	if api.imageInspects != 1 {
		t.Errorf("the image was read %d times; once per ID", api.imageInspects)
	}
	// A gone image: its labels open nothing.
	ct = rules.Container{Name: "c", Labels: map[string]string{"dockmoat.allow": "9000"}}
	_ = w.splitImageLabels(context.Background(), &ct, "sha256:gone")
	if len(ct.Labels) != 0 || ct.ImageLabels["dockmoat.allow"] != "9000" {
		t.Errorf("labels of a container whose image is gone: %v / %v", ct.Labels, ct.ImageLabels)
	}
	// The inspect path.
	info := container.InspectResponse{ID: "abc", Name: "/c", Image: "sha256:img", Config: &container.Config{Labels: maps.Clone(labels)}}
	ct = FromInspect(info)
	_ = w.splitImageLabels(context.Background(), &ct, info.Image)
	if _, ok := ct.Labels["dockmoat.allow"]; ok {
		t.Errorf("inspect path kept the image's label: %v", ct.Labels)
	}
}
