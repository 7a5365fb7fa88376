package reconciler

import (
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/netfilter/ipt/iptfake"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// setRig is newRig on fake ipsets.
func setRig(t *testing.T) (*rig, *iptfake.Sets) {
	fs := iptfake.NewSets()
	r := newRigSets(t, config.Default(), fs)
	fs.RestoresAt = func() int { return r.v4.Restores }
	return r, fs
}

// Opening a port withdraws nothing: the conntrack table is not walked.
// Closing one does.
func TestRevocationOnlyWhenSomethingWithdrawn(t *testing.T) {
	r, _ := setRig(t)
	ct := &countingCT{}
	r.rec.SetConntrack(ct)
	r.sync(t)
	if ct.calls != 1 {
		t.Errorf("the first pass sweeps sessions opened before it: want one walk, got %d", ct.calls)
	}
	ct.calls = 0
	second := rulestest.Web("172.17.0.3")
	second.ID, second.Name = "w2", "web2"
	second.Ports[0].HostPort = 8081
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{rulestest.Web("172.17.0.2"), second}}, nil)
	r.sync(t)
	if ct.calls != 0 {
		t.Errorf("a port opened, yet the conntrack table was walked %d time(s)", ct.calls)
	}
	r.docker.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{second}}, nil)
	r.sync(t)
	if ct.calls != 1 {
		t.Errorf("a port closed: want one walk of the conntrack table, got %d", ct.calls)
	}
}

type countingCT struct{ calls int }

func (c *countingCT) Delete(rules.Family, func(Flow) bool) (uint, error) {
	c.calls++
	return 0, nil
}
