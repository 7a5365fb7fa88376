package reconciler

import (
	"bufio"
	"bytes"
	"regexp"
	"strings"

	"github.com/dockmoat/dockmoat/rules"
)

// Observed is what one `iptables-save -t filter` says about the chains
// dockmoat cares about. It is read in one listing per pass: no per-rule -C.
type Observed struct {
	// Chains lists every chain of the table (builtin and user).
	Chains map[string]bool
	// Owned holds, per chain of dockmoat's (rules.IsOwnedChain), the hash of each rule in order
	// ("" for a rule without a dockmoat comment: someone else's rule in
	// our chain, which makes the chain differ and be rewritten).
	Owned map[string][]string
	// Hook lists the 1-based positions of dockmoat's hook in DOCKER-USER.
	Hook []int
	// DockerUser is the raw rule lines of DOCKER-USER, for audit and tests.
	DockerUser []string
	// ForwardHook lists the hook's positions in FORWARD, where it sits on
	// ip6tables of Docker older than 23 with ipv6_forward_hook enabled.
	ForwardHook []int
	// InputHook lists the positions of the jump to DOCKMOAT-INPUT in
	// INPUT (the docker-proxy path, rules/proxy.go).
	InputHook []int
}

var hashRe = regexp.MustCompile(`--comment "?` + regexp.QuoteMeta(rules.CommentPrefix) + `([0-9a-f]{16})`)

// ParseSave parses iptables-save output of the filter table.
func ParseSave(data []byte) Observed {
	obs := Observed{Chains: map[string]bool{}, Owned: map[string][]string{}}
	inFilter := false
	forward, input := 0, 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			inFilter = line == "*filter"
		case !inFilter:
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			obs.Chains[name] = true
			if rules.IsOwnedChain(name) {
				if _, ok := obs.Owned[name]; !ok {
					obs.Owned[name] = []string{}
				}
			}
		case strings.HasPrefix(line, "-A "):
			chain, _, _ := strings.Cut(line[3:], " ")
			if chain == rules.InputHookChain {
				input++
				if isInputHook(line) {
					obs.InputHook = append(obs.InputHook, input)
				}
				continue
			}
			if chain == "FORWARD" {
				forward++
				if isHook(line) {
					obs.ForwardHook = append(obs.ForwardHook, forward)
				}
				continue
			}
			if chain == rules.HookChain {
				obs.DockerUser = append(obs.DockerUser, line)
				if isHook(line) {
					obs.Hook = append(obs.Hook, len(obs.DockerUser))
				}
				continue
			}
			if rules.IsOwnedChain(chain) {
				h := ""
				if m := hashRe.FindStringSubmatch(line); m != nil {
					h = m[1]
				}
				obs.Owned[chain] = append(obs.Owned[chain], h)
			}
		}
	}
	return obs
}

func isHook(line string) bool {
	return strings.Contains(line, rules.HookComment) && strings.HasSuffix(line, "-j "+rules.ChainMain)
}

func isInputHook(line string) bool {
	return strings.Contains(line, rules.InputHookComment) && strings.HasSuffix(line, "-j "+rules.ChainInput)
}
