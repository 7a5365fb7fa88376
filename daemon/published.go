package daemon

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/netfilter"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// The guard's record. At boot nothing of dockmoat's is in the kernel, and
// dockerd starts its restart-policy containers before dockmoat runs: their
// ports answer over INPUT through docker-proxy. The daemon records the
// published ports of its last good pass (publishedFile, in the state
// directory, rewritten only when they change, so a pass that moves a
// container writes nothing); `dockmoat guard` closes exactly those.

const publishedFile = "published.json"

// publishedRun is a policy.PortRun without its containers.
type publishedRun struct {
	Proto string `json:"proto"`
	Lo    uint16 `json:"lo"`
	Hi    uint16 `json:"hi"`
	Host  string `json:"host,omitempty"`
}

// publishedRecord is publishedFile: the runs per family.
type publishedRecord struct {
	IPv4 []publishedRun `json:"ipv4"`
	IPv6 []publishedRun `json:"ipv6"`
}

// recordOf is a pass's published runs (a second layer's plans repeat the
// policy and are left out).
func recordOf(res netfilter.SyncResult) publishedRecord {
	var rec publishedRecord
	for _, p := range res.Plans {
		if p.Layer {
			continue
		}
		runs := &rec.IPv4
		if p.Family == rules.IPv6 {
			runs = &rec.IPv6
		}
		for _, r := range p.Result.Input.All {
			pr := publishedRun{Proto: r.Proto, Lo: r.Lo, Hi: r.Hi}
			if r.HostIP.IsValid() {
				pr.Host = r.HostIP.String()
			}
			*runs = append(*runs, pr)
		}
	}
	return rec
}

// publishedWriter records each good pass's published runs in dir when
// they differ from the last ones written.
func publishedWriter(dir string, log logrus.FieldLogger) func(netfilter.SyncResult, error, time.Duration) {
	var last *publishedRecord
	return func(res netfilter.SyncResult, err error, _ time.Duration) {
		if err != nil {
			return
		}
		rec := recordOf(res)
		if last != nil && slices.Equal(last.IPv4, rec.IPv4) && slices.Equal(last.IPv6, rec.IPv6) {
			return
		}
		if werr := writeJSONFile(dir, publishedFile, rec); werr != nil {
			log.WithError(werr).Warn("cannot record the published ports for the boot guard")
			return
		}
		last = &rec
	}
}

// LastPublished reads the published ports of the daemon's last good pass
// from dir, IPv4 then IPv6: what the guard closes on the docker-proxy
// path at boot. Missing, there are none (the DNAT path is closed all the
// same); damaged, an error and none.
func LastPublished(dir string) ([2][]policy.PortRun, error) {
	var out [2][]policy.PortRun
	file := filepath.Join(dir, publishedFile)
	data, err := os.ReadFile(file)
	if err != nil {
		return out, err
	}
	var rec publishedRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return out, fmt.Errorf("%s: %w", file, err)
	}
	for i, runs := range [2][]publishedRun{rec.IPv4, rec.IPv6} {
		for _, p := range runs {
			r := policy.PortRun{PortRange: policy.PortRange{Proto: p.Proto, Lo: p.Lo, Hi: p.Hi}}
			if p.Host != "" {
				if r.HostIP, err = netip.ParseAddr(p.Host); err != nil {
					return [2][]policy.PortRun{}, fmt.Errorf("%s: %w", file, err)
				}
			}
			if p.Lo == 0 || p.Hi < p.Lo || !slices.Contains([]string{"tcp", "udp", "sctp"}, p.Proto) {
				return [2][]policy.PortRun{}, fmt.Errorf("%s: bad published run %+v", file, p)
			}
			out[i] = append(out[i], r)
		}
	}
	return out, nil
}
