package dockerwatch

import (
	"context"
	"fmt"
	"maps"

	"github.com/containerd/errdefs"

	"github.com/dockmoat/dockmoat/rules"
)

// splitImageLabels moves ct's dockmoat labels that its image carries with
// the same value into ct.ImageLabels (rules/image.go says why). Images
// are read once per ID (an ID names immutable content). An image that is
// gone counts as carrying every dockmoat label of the container: its
// labels open nothing until it can be read (closed, never open).
func (w *Watcher) splitImageLabels(ctx context.Context, ct *rules.Container, imageID string) error {
	own := false
	for k := range ct.Labels {
		own = own || rules.IsOwnLabel(k)
	}
	if !own {
		return nil
	}
	image, err := w.imageLabels(ctx, imageID)
	if err != nil {
		return err
	}
	labels := maps.Clone(ct.Labels)
	for k, v := range ct.Labels {
		iv, inImage := image[k]
		if rules.IsOwnLabel(k) && (image == nil || (inImage && iv == v)) {
			if ct.ImageLabels == nil {
				ct.ImageLabels = map[string]string{}
			}
			ct.ImageLabels[k] = v
			delete(labels, k)
		}
	}
	ct.Labels = labels
	return nil
}

// imageLabels returns an image's labels (nil: the image is gone).
func (w *Watcher) imageLabels(ctx context.Context, id string) (map[string]string, error) {
	w.imagesMu.Lock()
	defer w.imagesMu.Unlock()
	if labels, ok := w.images[id]; ok {
		return labels, nil
	}
	res, err := w.API.ImageInspect(ctx, id)
	switch {
	case errdefs.IsNotFound(err):
		return nil, nil // not cached: it may be pulled again
	case err != nil:
		return nil, fmt.Errorf("inspecting image %s: %w", id, err)
	}
	labels := map[string]string{}
	if res.Config != nil {
		maps.Copy(labels, res.Config.Labels)
	}
	if w.images == nil {
		w.images = map[string]map[string]string{}
	}
	w.images[id] = labels
	return labels, nil
}
