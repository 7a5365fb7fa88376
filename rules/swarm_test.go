package rules_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

// A service published through the routing mesh reaches the policy as an
// entry whose endpoint is the node's ingress sandbox, port kept (see
// dockerwatch.IngressContainer): a config `service:` rule opens it for
// its sources, on every node alike; a `container: "*"` glob does not.
func TestIngressEntryOpenedByServiceRule(t *testing.T) {
	sbox := rules.Endpoint{Network: "docker_gwbridge", IPv4: addr("172.29.0.2")}
	mesh := func(svc string, port uint16) rules.Container {
		return rules.Container{ID: "ingress/" + svc, Name: "ingress/" + svc, Labels: map[string]string{config.LabelSwarmService: svc},
			Endpoints: []rules.Endpoint{sbox}, Ports: []rules.PortBinding{{HostPort: port, ContainerPort: port, Proto: "tcp"}, {HostPort: port, ContainerPort: port, Proto: "udp"}}}
	}
	cfg, err := config.Parse([]byte("allow:\n- service: shop/web\n  ports: ['8080/tcp']\n  from: [198.51.100.100]\n- container: '*'\n  ports: ['*']\n  from: [192.0.2.1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	res := policy.Build(cfg, rules.Snapshot{Containers: []rules.Container{mesh("shop_web", 8080), mesh("db", 5432)}, Bridges: []string{"docker_gwbridge"}}, rules.IPv4, policy.Options{})
	var got []string
	for _, a := range res.Allows() {
		got = append(got, a.Container+" "+a.Addr.String()+" "+a.Binding.Proto+" "+a.Source)
	}
	want := []string{"ingress/shop_web 172.29.0.2 tcp 198.51.100.100/32"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("allows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, d := range res.Decisions() {
		if d.Binding.HostPort == 8080 && d.Binding.Proto == "tcp" && d.Binding.HostPort != d.Binding.ContainerPort {
			t.Errorf("mesh port not kept: %+v", d)
		}
	}
}

// Labels on the task of a mesh-published service name no published port
// of that container: the problem says why and names the fix.
func TestIngressTaskLabelsExplained(t *testing.T) {
	task := rules.Container{ID: "t", Name: "web.1.abc", Labels: map[string]string{config.LabelSwarmService: "web", rules.LabelAllow: "8080"},
		Endpoints: []rules.Endpoint{{Network: "ingress", IPv4: netip.MustParseAddr("10.0.0.6")}}}
	res := policy.Build(config.Default(), rules.Snapshot{Containers: []rules.Container{task}}, rules.IPv4, policy.Options{})
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0].String(), "routing mesh") ||
		!strings.Contains(res.Problems[0].String(), "service: web") || !strings.Contains(res.Problems[0].String(), "mode=host") {
		t.Errorf("problems %v", res.Problems)
	}
}

// Service labels are reported with the fix, never applied.
func TestServiceLabelsReported(t *testing.T) {
	snap := rules.Snapshot{ServiceLabels: map[string]map[string]string{"web": {"dockmoat.allow": "8080"}}}
	res := policy.Build(config.Default(), snap, rules.IPv4, policy.Options{})
	if len(res.Problems) != 1 || !strings.Contains(res.Problems[0].String(), "service web") ||
		!strings.Contains(res.Problems[0].String(), "container label") || len(res.Allows()) != 0 {
		t.Errorf("problems %v, allows %v", res.Problems, res.Allows())
	}
}
