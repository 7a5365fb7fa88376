package daemon

import (
	"encoding/json"
	"path/filepath"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/netfilter"
)

// The daemon writes what `dockmoat status` tells into its state directory
// after every pass (StatusFile); status reads it beside the daemon lock
// and the disable switch, so it needs no metrics address and works in
// the sidecar (`docker exec dockmoat dockmoat status`).

const StatusFile = "status.json"

// Status is the daemon's last pass, as status.json holds it.
type Status struct {
	Version   string         `json:"version"`
	Started   time.Time      `json:"started"`
	LastPass  time.Time      `json:"last_pass"`
	LastOK    time.Time      `json:"last_ok,omitzero"`
	LastError string         `json:"last_error,omitempty"`
	Families  []FamilyStatus `json:"families"`
	Problems  int            `json:"problems"`
	Observe   bool           `json:"observe,omitempty"` // the last pass ran in observe mode
}

type FamilyStatus struct {
	Family  string `json:"family"`
	Tool    string `json:"tool"`
	Skipped string `json:"skipped,omitempty"`
	Open    int    `json:"open"`
	Closed  int    `json:"closed"`
}

// StatusWriter records each pass in dir; it keeps the last good pass's
// counts when a pass fails.
func StatusWriter(dir, version string, log logrus.FieldLogger) func(netfilter.SyncResult, error, time.Duration) {
	st := Status{Version: version, Started: time.Now().UTC()}
	return func(res netfilter.SyncResult, err error, _ time.Duration) {
		st.LastPass, st.LastError, st.Observe = time.Now().UTC(), "", res.Observe
		if err != nil {
			st.LastError = err.Error()
		} else {
			st.LastOK, st.Families, st.Problems = st.LastPass, nil, 0
			for _, p := range res.Plans {
				if p.Layer {
					continue
				}
				f := FamilyStatus{Family: p.Family.String(), Tool: p.Tool, Skipped: p.Skipped}
				for _, d := range p.Result.Decisions() {
					if d.Open {
						f.Open++
					} else {
						f.Closed++
					}
				}
				st.Families = append(st.Families, f)
				st.Problems += len(p.Result.Problems)
			}
		}
		if werr := writeStatus(dir, st); werr != nil {
			log.WithError(werr).Debug("cannot record the pass for dockmoat status")
		}
	}
}

func writeStatus(dir string, st Status) error { return writeJSONFile(dir, StatusFile, st) }

// writeJSONFile replaces dir/name with v as JSON, whole or not at all.
func writeJSONFile(dir, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(dir, name), data)
}
