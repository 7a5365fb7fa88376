package ipt

import (
	"context"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/rulestest"
)

// The limit rules' counters are read back per family and path (the
// metrics' refusals); no other rule is taken for one.
func TestLimitRefusals(t *testing.T) {
	r := newRig(t, config.Default())
	web := rulestest.Web("172.17.0.2")
	web.Labels["dockmoat.limit.8080"] = "10/minute"
	r.set(rules.Snapshot{Bridges: []string{"docker0"}, Containers: []rules.Container{web}})
	r.sync(t)
	r.v4.Packets = func(line string) uint64 {
		if strings.Contains(line, "hashlimit") {
			return 7
		}
		return 3
	}
	got, err := r.b.LimitRefusals(context.Background())
	// One rule on the DNAT path, one on the docker-proxy path.
	if err != nil || len(got) != 2 || got[0].Proxy || !got[1].Proxy {
		t.Fatalf("%+v %v", got, err)
	}
	for _, g := range got {
		if g.Port != "8080/tcp" || g.Container != "web" || g.Packets != 7 || g.Family != rules.IPv4 {
			t.Errorf("%+v", g)
		}
	}
}
