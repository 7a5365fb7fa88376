// Package config owns dockmoat's configuration file: its YAML schema, its
// defaults and its validation. It turns bytes into a validated Config and
// never touches the firewall or Docker; the label syntax shared with the
// file (port specs, source lists) lives here too so both are parsed by the
// same code. state.go keeps what is state rather than configuration: the
// `dockmoat disable` switch and the running daemon's lock.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/dockmoat/dockmoat/config/yamlkeys"
)

// DefaultPath is where `dockmoat run` looks when --config is not given.
const DefaultPath = "/etc/dockmoat/config.yaml"

// UFWMode says whether traffic not opened by dockmoat is handed to UFW's
// route rules (chain ufw-user-forward) before the default deny.
type UFWMode string

const (
	// UFWAuto hands traffic to ufw-user-forward when that chain exists.
	UFWAuto UFWMode = "auto"
	// UFWOn always wants the hand-off and reports an error when the chain
	// is missing (the port then stays closed).
	UFWOn UFWMode = "on"
	// UFWOff ignores UFW entirely: `ufw route allow` opens nothing.
	UFWOff UFWMode = "off"
)

// Config is the validated configuration.
type Config struct {
	// TrustedSources may reach every published port; so may whatever
	// arrives on TrustedIfaces (`iface:NAME` in trusted_sources).
	TrustedSources []Source
	TrustedIfaces  []string
	// DenySources may reach no published port: refused before any allow,
	// trusted sources included (`deny_sources:`); nor may what arrives
	// on DenyIfaces.
	DenySources []Source
	DenyIfaces  []string
	UFW         UFWMode
	LogBlocked  bool
	Allow       []AllowRule
	// Egress limits containers' outbound connections (egress.go).
	Egress Egress
	// IPv6ForwardHook lets dockmoat put its hook at the top of ip6tables'
	// FORWARD when Docker manages ip6tables without a DOCKER-USER chain
	// (Docker 20.10 with --ip6tables). Off by default: FORWARD is not
	// dockmoat's chain.
	IPv6ForwardHook bool
	// NoIPSet keeps one iptables rule per allowed port instead of kernel
	// ipsets (`ipset: off`); the default (`auto`) uses ipsets where the
	// kernel has them.
	NoIPSet bool
	// TrustImageLabels obeys dockmoat labels that come with a container's
	// image (`image_labels: trust`); by default (`ignore`) only labels set
	// at create, and this file, decide (rules/image.go).
	TrustImageLabels bool
	// UFWInput translates ufw's plain `ufw allow PORT [from SRC]` rules
	// (INPUT) into allows of the published host port PORT
	// (`ufw_input: true`; ipt.UFWInputAllows).
	UFWInput bool
	// Observe lets through, counts and logs the new connections to
	// published ports that the policy refuses, instead of dropping them
	// (`mode: observe`, `dockmoat run --observe`): everything else is
	// installed as when enforcing, so `dockmoat enforce` only swaps the
	// refusals back in.
	Observe bool
	// Lists are the named source lists' sources (lists.go), ListFiles
	// their files, and ListErrors the lists that could not be read (they
	// open nothing).
	Lists      map[string][]Source
	ListFiles  map[string]string
	ListErrors []string
	// ListNotes are the URL lists not available (not fetched yet, no
	// state directory): they open nothing, but the file is not at fault.
	ListNotes []string
	// ListURLs are the lists fetched from a URL (their ListFiles are the
	// copies in the state directory).
	ListURLs map[string]ListURL
	// Disabled turns protection off, by `dockmoat disable` (state.go),
	// never by the file: the rules stay installed behind one bypass rule
	// per hook, so `dockmoat enable` restores them by removing it.
	Disabled bool
}

// AllowRule opens ports of containers selected by name glob or service,
// for containers the user cannot label.
type AllowRule struct {
	Container string // glob on the container name, "" = not used
	// Service is "PROJECT/SERVICE" (a compose service, or the service
	// SERVICE of the Swarm stack PROJECT, named PROJECT_SERVICE by Swarm)
	// or a Swarm service's name; "" = not used.
	Service string
	Ports   []PortSpec
	From    Sources // empty Any=false list never happens: validated
	// Limit, when set, limits new connections per source to the ports
	// the rule opens.
	Limit RateLimit
	// Origin names the rule for people (plan's reason); "" = the file's
	// allow[i].
	Origin string
}

// Labels Docker puts on the containers of compose services and of Swarm
// tasks; AllowRule.Service matches them.
const (
	LabelComposeProject = "com.docker.compose.project"
	LabelComposeService = "com.docker.compose.service"
	LabelStack          = "com.docker.stack.namespace"
	LabelSwarmService   = "com.docker.swarm.service.name"
)

// Matches reports whether the rule selects a container.
func (a AllowRule) Matches(name string, labels map[string]string) bool {
	if a.Container != "" {
		if ok, _ := path.Match(a.Container, name); !ok {
			return false
		}
	}
	if a.Service != "" && !matchesService(a.Service, labels) {
		return false
	}
	return true
}

// matchesService matches a service spec, each part a glob ("shop/*" is
// every service of the compose project or stack shop).
func matchesService(spec string, labels map[string]string) bool {
	glob := func(pattern, name string) bool {
		ok, _ := path.Match(pattern, name)
		return ok && name != ""
	}
	name := labels[LabelSwarmService]
	project, service, ok := strings.Cut(spec, "/")
	if !ok {
		return glob(spec, name)
	}
	if glob(project, labels[LabelComposeProject]) && glob(service, labels[LabelComposeService]) {
		return true
	}
	// A stack's service is named STACK_SERVICE. The routing mesh's entries
	// carry the name only (dockerwatch.IngressContainer), so without the
	// stack label the whole name is matched.
	if stack, ok := labels[LabelStack]; ok {
		return glob(project, stack) && strings.HasPrefix(name, stack+"_") && glob(service, strings.TrimPrefix(name, stack+"_"))
	}
	return glob(project+"_"+service, name)
}

// ServiceOf names a container's service the way an allow rule's service
// selects it: PROJECT/SERVICE for compose and Swarm stacks, the Swarm
// service name otherwise, "" for a container of neither.
func ServiceOf(labels map[string]string) string {
	if p, s := labels[LabelComposeProject], labels[LabelComposeService]; p != "" && s != "" {
		return p + "/" + s
	}
	name := labels[LabelSwarmService]
	if stack := labels[LabelStack]; stack != "" && strings.HasPrefix(name, stack+"_") {
		return stack + "/" + strings.TrimPrefix(name, stack+"_")
	}
	return name
}

// Default returns the configuration used when no file exists.
func Default() Config { return Config{UFW: UFWAuto} }

// FailClosed is the configuration used while the config file is invalid,
// or missing where it was named on the command line: the file opens
// nothing (no trusted sources, no allow rules, ufw route rules not
// consulted since the file may have said `ufw: off`); labels keep working.
// The default deny is installed all the same.
func FailClosed() Config { return Config{UFW: UFWOff} }

// Fix is the advice logged with a config error.
const Fix = "until it is fixed dockmoat runs fail-closed: every published port is closed except those opened by container labels " +
	"(no trusted_sources, no allow rules from the file, ufw route rules not consulted); fix the file, then reload " +
	"(systemctl reload dockmoat, or kill -HUP the daemon); no restart needed"

type fileAllow struct {
	Container string   `yaml:"container"`
	Service   string   `yaml:"service"`
	Ports     []string `yaml:"ports"`
	// From is a node so that `from:` written with nothing after it (or
	// `from: []`) can be told from no `from` key at all: the first is an
	// error, not "everyone".
	From  yaml.Node `yaml:"from"`
	Limit string    `yaml:"limit"`
}

type file struct {
	TrustedSources []string            `yaml:"trusted_sources"`
	DenySources    []string            `yaml:"deny_sources"`
	UFW            *string             `yaml:"ufw"`
	LogBlocked     *bool               `yaml:"log_blocked"`
	IPv6Hook       *bool               `yaml:"ipv6_forward_hook"`
	IPSet          *string             `yaml:"ipset"`
	ImageLabels    *string             `yaml:"image_labels"`
	Mode           *string             `yaml:"mode"`
	Lists          map[string]fileList `yaml:"lists"`
	UFWInput       *bool               `yaml:"ufw_input"`
	Allow          []fileAllow         `yaml:"allow"`
	Egress         []fileEgress        `yaml:"egress"`
	EgressDNS      []string            `yaml:"egress_dns"`
}

// Parse validates a YAML document. Unknown keys are errors: a typo such as
// `trusted_source:` must not silently leave a port closed or open.
func Parse(data []byte) (Config, error) { return ParseWith(data, nil) }

// ParseWith is Parse that reads the named lists' files with read (nil:
// none is read, and every list is empty).
func ParseWith(data []byte, read func(string) ([]byte, error)) (Config, error) {
	return ParseIn(data, read, "")
}

// ParseIn is ParseWith where the copies of URL lists are kept under
// stateDir ("": nowhere, so they open nothing).
func ParseIn(data []byte, read func(string) ([]byte, error), stateDir string) (Config, error) {
	cfg := Default()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Config{}, yamlkeys.TypeError(err, yamlkeys.Paths{}, yamlWants, "config.")
	}
	paths, err := yamlkeys.Check(&root, reflect.TypeOf(file{}))
	if err != nil {
		return Config{}, err
	}
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, yamlkeys.TypeError(err, paths, yamlWants, "config.")
	}
	if err := readLists(&cfg, f.Lists, read, stateDir, paths); err != nil {
		return Config{}, err
	}
	if cfg.TrustedSources, cfg.TrustedIfaces, err = sourceList("trusted_sources", f.TrustedSources, cfg.Lists, paths); err != nil {
		return Config{}, err
	}
	if cfg.DenySources, cfg.DenyIfaces, err = sourceList("deny_sources", f.DenySources, cfg.Lists, paths); err != nil {
		return Config{}, err
	}
	if f.UFW != nil {
		switch m := UFWMode(strings.ToLower(strings.TrimSpace(*f.UFW))); m {
		case UFWAuto, UFWOn, UFWOff:
			cfg.UFW = m
		default:
			return Config{}, paths.At("ufw", fmt.Errorf("%q is not one of auto, on, off", *f.UFW))
		}
	}
	if f.LogBlocked != nil {
		cfg.LogBlocked = *f.LogBlocked
	}
	if f.IPv6Hook != nil {
		cfg.IPv6ForwardHook = *f.IPv6Hook
	}
	if f.UFWInput != nil {
		cfg.UFWInput = *f.UFWInput
	}
	if err := parseModes(f, &cfg, paths); err != nil {
		return Config{}, err
	}
	for i, a := range f.Allow {
		rule, err := parseAllow(a, cfg.Lists)
		if err != nil {
			return Config{}, paths.At(fmt.Sprintf("allow[%d]", i), err)
		}
		cfg.Allow = append(cfg.Allow, rule)
	}
	eg, err := parseEgress(f.Egress, f.EgressDNS, paths)
	if err != nil {
		return Config{}, err
	}
	cfg.Egress = eg
	return cfg, nil
}

// parseModes reads the keys that choose between fixed words.
func parseModes(f file, cfg *Config, paths yamlkeys.Paths) error {
	word := func(p *string) string { return strings.ToLower(strings.TrimSpace(*p)) }
	if f.IPSet != nil {
		switch word(f.IPSet) {
		case "auto":
		case "off":
			cfg.NoIPSet = true
		default:
			return paths.At("ipset", fmt.Errorf("%q is not one of auto, off", *f.IPSet))
		}
	}
	if f.Mode != nil {
		switch word(f.Mode) {
		case "enforce":
		case "observe":
			cfg.Observe = true
		default:
			return paths.At("mode", fmt.Errorf("%q is not one of enforce, observe", *f.Mode))
		}
	}
	if f.ImageLabels != nil {
		switch word(f.ImageLabels) {
		case "ignore":
		case "trust":
			cfg.TrustImageLabels = true
		default:
			return paths.At("image_labels", fmt.Errorf("%q is not one of ignore, trust", *f.ImageLabels))
		}
	}
	return nil
}

// sourceList parses a list of sources under key (`list:NAME` expanded,
// `iface:NAME` apart).
func sourceList(key string, list []string, lists map[string][]Source, paths yamlkeys.Paths) ([]Source, []string, error) {
	var out []Source
	var ifaces []string
	for i, s := range list {
		s = strings.TrimSpace(s)
		if name, ok := strings.CutPrefix(s, IfacePrefix); ok {
			ifc, err := ParseIface(name)
			if err != nil {
				return nil, nil, paths.At(fmt.Sprintf("%s[%d]", key, i), err)
			}
			ifaces = append(ifaces, ifc)
			continue
		}
		if strings.HasPrefix(s, ListPrefix) {
			srcs, err := ParseSourcesIn(s, lists)
			if err != nil {
				return nil, nil, paths.At(fmt.Sprintf("%s[%d]", key, i), err)
			}
			out = append(out, srcs.Prefixes...)
			continue
		}
		src, err := ParseSource(s)
		if err != nil {
			return nil, nil, paths.At(fmt.Sprintf("%s[%d]", key, i), err)
		}
		out = append(out, src)
	}
	return out, sortedIfaces(ifaces), nil
}

// parseSelector validates the container and service keys that select
// the containers of an allow or egress rule.
func parseSelector(container, service string) (AllowRule, error) {
	r := AllowRule{Container: strings.TrimSpace(container), Service: strings.TrimSpace(service)}
	if r.Container == "" && r.Service == "" {
		return r, errors.New("needs container (name or glob) or service (COMPOSE_PROJECT/SERVICE, STACK/SERVICE or a Swarm service name)")
	}
	if r.Container != "" {
		if _, err := path.Match(r.Container, ""); err != nil {
			return r, fmt.Errorf("container %q: bad glob: %w", r.Container, err)
		}
	}
	if r.Service != "" {
		p, s, ok := strings.Cut(r.Service, "/")
		if ok && (p == "" || s == "" || strings.Contains(s, "/")) {
			return r, fmt.Errorf("service %q: want COMPOSE_PROJECT/SERVICE, STACK/SERVICE or a Swarm service name", r.Service)
		}
		if _, err := path.Match(r.Service, ""); err != nil {
			return r, fmt.Errorf("service %q: bad glob: %w", r.Service, err)
		}
	}
	return r, nil
}

func parseAllow(a fileAllow, lists map[string][]Source) (AllowRule, error) {
	r, err := parseSelector(a.Container, a.Service)
	if err != nil {
		return r, err
	}
	if len(a.Ports) == 0 {
		return r, errors.New("ports: list at least one port, range or *")
	}
	for _, p := range a.Ports {
		spec, err := ParsePortSpec(p)
		if err != nil {
			return r, fmt.Errorf("ports: %w", err)
		}
		r.Ports = append(r.Ports, spec)
	}
	if a.Limit != "" {
		if r.Limit, err = ParseRateLimit(a.Limit); err != nil {
			return r, fmt.Errorf("limit: %w", err)
		}
	}
	if a.From.Kind == 0 { // no from key: open to anyone, as documented
		r.From = Sources{Any: true}
		return r, nil
	}
	var from []string
	if err := a.From.Decode(&from); err != nil {
		return r, fmt.Errorf("from (line %d): want a list of addresses or CIDRs: %w", a.From.Line, err)
	}
	if len(from) == 0 {
		return r, fmt.Errorf("from (line %d) is empty: list the allowed sources, or remove the from key to allow everyone", a.From.Line)
	}
	srcs, err := ParseSourcesIn(strings.Join(from, ","), lists)
	if err != nil {
		return r, fmt.Errorf("from: %w", err)
	}
	r.From = srcs
	return r, nil
}

// Load reads and validates a config file. When required is false a
// missing file yields the defaults (the default path is optional); a file
// named on the command line must exist. URL lists open nothing (see
// LoadIn).
func Load(file string, required bool) (Config, error) { return LoadIn(file, required, "") }

// LoadIn is Load with the state directory that keeps the URL lists'
// copies.
func LoadIn(file string, required bool, stateDir string) (Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !required {
			return Default(), nil
		}
		if errors.Is(err, os.ErrNotExist) {
			return Config{}, fmt.Errorf("config %s does not exist: create it (deploy/config.example.yaml is a commented example) or leave out --config to run on the defaults: %w", file, err)
		}
		return Config{}, fmt.Errorf("reading config %s: %w", file, err)
	}
	cfg, err := ParseIn(data, os.ReadFile, stateDir)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", file, err)
	}
	return cfg, nil
}
