package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseFull(t *testing.T) {
	cfg, err := Parse([]byte(`
trusted_sources: [192.168.10.0/24, "2001:db8::1"]
ufw: "off"
log_blocked: true
allow:
  - container: "grafana*"
    ports: ["3000", "9000-9010/udp"]
    from: ["198.51.100.0/24"]
  - service: shop/api
    ports: ["*"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.TrustedSources) != 2 || cfg.TrustedSources[1].String() != "2001:db8::1/128" {
		t.Errorf("trusted_sources: %v", cfg.TrustedSources)
	}
	if cfg.UFW != UFWOff || !cfg.LogBlocked {
		t.Errorf("ufw %q log_blocked %v", cfg.UFW, cfg.LogBlocked)
	}
	if len(cfg.Allow) != 2 {
		t.Fatalf("allow: %+v", cfg.Allow)
	}
	a := cfg.Allow[0]
	if a.Ports[1].String() != "9000-9010/udp" || a.From.Any || a.From.Prefixes[0].String() != "198.51.100.0/24" {
		t.Errorf("allow[0]: %+v", a)
	}
	if !cfg.Allow[1].From.Any || !cfg.Allow[1].Ports[0].All {
		t.Errorf("allow[1]: %+v", cfg.Allow[1])
	}
	if !a.Matches("grafana-1", nil) || a.Matches("prom", nil) {
		t.Error("glob matching")
	}
	s := cfg.Allow[1]
	if !s.Matches("x", map[string]string{"com.docker.compose.project": "shop", "com.docker.compose.service": "api"}) ||
		s.Matches("x", map[string]string{"com.docker.compose.project": "shop", "com.docker.compose.service": "db"}) {
		t.Error("service matching")
	}
}

// One service key selects compose services, Swarm stack services and
// plain Swarm services, as users name them in `docker stack deploy`,
// `docker service create` and compose files.
func TestServiceMatchesSwarm(t *testing.T) {
	stackTask := map[string]string{LabelStack: "shop", LabelSwarmService: "shop_api"}
	plainTask := map[string]string{LabelSwarmService: "api"}
	compose := map[string]string{LabelComposeProject: "shop", LabelComposeService: "api"}
	cases := []struct {
		spec   string
		labels map[string]string
		want   bool
	}{
		{"shop/api", stackTask, true},
		{"shop/api", compose, true},
		{"shop/api", plainTask, false},
		{"shop/db", stackTask, false},
		{"api", plainTask, true},
		{"shop_api", stackTask, true},
		{"api", stackTask, false},
		{"api", compose, false},
		{"other/api", map[string]string{LabelStack: "shop", LabelSwarmService: "other_api"}, false},
		{"shop/api", map[string]string{LabelSwarmService: "shop_api"}, true}, // a mesh entry: name only
		{"shop/*", stackTask, true},
		{"shop/*", compose, true},
		{"shop/*", map[string]string{LabelSwarmService: "shop_web"}, true},
		{"shop/*", map[string]string{LabelStack: "shopx", LabelSwarmService: "shopx_web"}, false},
		{"*/api", stackTask, true},
		{"a*", plainTask, true},
		{"*", map[string]string{}, false}, // no service at all
	}
	for _, c := range cases {
		if got := (AllowRule{Service: c.spec}).Matches("x", c.labels); got != c.want {
			t.Errorf("service %q on %v: %v, want %v", c.spec, c.labels, got, c.want)
		}
	}
	for labels, want := range map[*map[string]string]string{&stackTask: "shop/api", &plainTask: "api", &compose: "shop/api"} {
		if got := ServiceOf(*labels); got != want {
			t.Errorf("ServiceOf(%v) = %q, want %q", *labels, got, want)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	for _, doc := range []string{"", "{}", "# nothing\n"} {
		cfg, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if cfg.UFW != UFWAuto || cfg.LogBlocked || len(cfg.TrustedSources) != 0 || len(cfg.Allow) != 0 {
			t.Errorf("%q: defaults wrong: %+v", doc, cfg)
		}
	}
}

func TestParseErrors(t *testing.T) {
	cases := map[string]string{
		"trusted_source: [10.0.0.0/8]":                           `unknown key "trusted_source" at the top level: did you mean "trusted_sources"?`,
		"trusted_sources: [10.0.0.0/33]":                         "trusted_sources[0]",
		"ufw: maybe":                                             "not one of auto, on, off",
		"allow: [{ports: ['80']}]":                               "needs container",
		"allow: [{container: web}]":                              "list at least one port",
		"allow: [{container: web, ports: ['0']}]":                "1 to 65535",
		"allow: [{service: shop/, ports: ['80']}]":               "COMPOSE_PROJECT/SERVICE",
		"allow: [{service: a/b/c, ports: ['80']}]":               "Swarm service name",
		"allow: [{service: 'shop/[', ports: ['80']}]":            "bad glob",
		"allow: [{container: '[', ports: ['80']}]":               "bad glob",
		"allow: [{container: web, ports: ['80'], from: []}]":     "from (line 1) is empty",
		"allow:\n- container: web\n  ports: ['80']\n  from:\n":   "from (line 4) is empty",
		"allow: [{container: web, ports: ['80'], from: ~}]":      "is empty",
		"allow: [{container: web, ports: ['80'], from: {a: b}}]": "want a list",
		"allow: [{container: web, ports: ['80']}]":               "",
		"allow: [{container: web, ports: ['80'], from: [nope]}]": "not an IP address",
		"log_blocked: perhaps":                                   `line 1: log_blocked: want true or false, not "perhaps"`,
	}
	for doc, want := range cases {
		_, err := Parse([]byte(doc))
		if want == "" {
			if err != nil {
				t.Errorf("%q: unexpected error %v", doc, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want error containing %q", doc, err, want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.yaml")
	if cfg, err := Load(missing, false); err != nil || cfg.UFW != UFWAuto {
		t.Errorf("missing default file: %v %+v", err, cfg)
	}
	if _, err := Load(missing, true); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing --config file must be an error naming it, got %v", err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("ufw: sometimes\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad, false); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("bad file: %v", err)
	}
}

func TestPortSpecs(t *testing.T) {
	ok := map[string]string{"80": "80", " 443/TCP ": "443/tcp", "9000-9010": "9000-9010", "*": "*", "*/udp": "*/udp", "1-1": "1", "65535/sctp": "65535/sctp"}
	for in, want := range ok {
		s, err := ParsePortSpec(in)
		if err != nil || s.String() != want {
			t.Errorf("%q: got %v %v, want %s", in, s, err, want)
		}
	}
	for _, in := range []string{"", "0", "65536", "80/icmp", "a", "10-", "-10", "20-10", "80/", "1.5"} {
		if _, err := ParsePortSpec(in); err == nil {
			t.Errorf("%q: want an error", in)
		}
	}
	s, _ := ParsePortSpec("9000-9010/udp")
	if !s.Matches(9005, "udp") || s.Matches(9005, "tcp") || s.Matches(9011, "udp") {
		t.Error("range matching")
	}
}

func TestSources(t *testing.T) {
	s, err := ParseSources("10.0.0.1, 10.0.0.0/8 ,2001:db8::/32")
	if err != nil || len(s.Prefixes) != 3 || s.Prefixes[0].String() != "10.0.0.1/32" {
		t.Fatalf("%+v %v", s, err)
	}
	if p, _ := ParseSource("10.1.2.3/8"); p.String() != "10.0.0.0/8" {
		t.Errorf("prefix not masked: %s", p)
	}
	if a, _ := ParseSources("any"); !a.Any {
		t.Error("any")
	}
	if u := s.Union(Sources{Any: true}); !u.Any {
		t.Error("union with any")
	}
	if _, err := ParseSource("::ffff:10.0.0.0/104"); err == nil {
		t.Error("v4-mapped prefix should be rejected")
	}
}

func TestIPSetMode(t *testing.T) {
	for text, want := range map[string]bool{"{}\n": false, "ipset: auto\n": false, "ipset: off\n": true, "ipset: OFF\n": true} {
		cfg, err := Parse([]byte(text))
		if err != nil || cfg.NoIPSet != want {
			t.Errorf("%q: NoIPSet %v, err %v; want %v", text, cfg.NoIPSet, err, want)
		}
	}
	if _, err := Parse([]byte("ipset: maybe\n")); err == nil || !strings.Contains(err.Error(), "ipset") {
		t.Errorf("want an error naming ipset, got %v", err)
	}
}

// The shipped example must be valid as it is.
func TestExampleConfig(t *testing.T) {
	if _, err := Load("../deploy/config.example.yaml", true); err != nil {
		t.Fatal(err)
	}
}

func TestImageLabelsKey(t *testing.T) {
	for text, want := range map[string]bool{"": false, "image_labels: ignore\n": false, "image_labels: Trust\n": true} {
		cfg, err := Parse([]byte(text))
		if err != nil || cfg.TrustImageLabels != want {
			t.Errorf("%q: trust %v, %v", text, cfg.TrustImageLabels, err)
		}
	}
	if _, err := Parse([]byte("image_labels: yes\n")); err == nil || !strings.Contains(err.Error(), "ignore, trust") {
		t.Errorf("image_labels: yes: %v", err)
	}
}

// A bad file is reported in the user's words: the line, the key, what is
// wanted, a did-you-mean; never a Go type name or YAML tag.
func TestParseErrorsInUsersWords(t *testing.T) {
	for _, c := range []struct{ doc, want string }{
		{"trusted_sources: [10.0.0.0/8]\nallow:\n  - container: web\n    port: [\"80\"]\n",
			`line 4: unknown key "port" in allow[0]: did you mean "ports"? (known keys: container, service, ports, from, limit)`},
		{"allow:\n  - container: web\n    ports: 80\n", `line 3: allow[0].ports: want a list, such as ["80", "443/tcp"], not "80"`},
		{"ufw: auto\nallow: yes\n", `line 2: allow: want a list of rules, each starting with "- container:" or "- service:", not "yes"`},
		{"trusted_sources:\n  - 10.0.0.0/8\n  - 10.1.0.0/33\n", "line 3: trusted_sources[1]:"},
		{"allow:\n  - container: web\n    ports: [\"80000\"]\n", "line 2: allow[0]: ports:"},
		{"allow:\n  - container: web\n    ports: [\"80\"]\n    from: []\n", "line 2: allow[0]: from (line 4) is empty"},
		{"egress:\n  - container: x\n    policy: dney\n", `line 2: egress[0]: policy "dney" is not one of deny, allow`},
		{"ipset: of\n", `line 1: ipset: "of" is not one of auto, off`},
		{"egres:\n  - container: x\n", `did you mean "egress"?`},
		{"allow:\n  - container: web\n    ports: [\"80\"\n", "not valid YAML: line"},
		{"imagelabels: trust\n", `did you mean "image_labels"?`},
		{"zzz: 1\n", `line 1: unknown key "zzz" at the top level (known keys:`},
	} {
		_, err := Parse([]byte(c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %s", c.doc, err, c.want)
			continue
		}
		for _, jargon := range []string{"config.", "[]string", "!!", "unmarshal", "not found in type"} {
			if strings.Contains(err.Error(), jargon) {
				t.Errorf("%q: %v: says %q", c.doc, err, jargon)
			}
		}
	}
}
