package iptplan

import (
	"regexp"
	"strings"

	"github.com/dockmoat/dockmoat/netfilter/iptsave"
	"github.com/dockmoat/dockmoat/rules"
)

var hashRe = regexp.MustCompile(`--comment "?` + regexp.QuoteMeta(rules.CommentPrefix) + `([0-9a-f]{16})`)

// Observe reads from iptables-save output of the filter table what the
// backend needs: the chains, dockmoat's rule hashes and its jumps.
func Observe(data []byte) Observed {
	return ObserveFilter(iptsave.ParseRaw(data)["filter"])
}

// ObserveFilter is Observe of a filter table already parsed (nil: none).
func ObserveFilter(filter *iptsave.Table) Observed {
	obs := Observed{Chains: map[string]bool{}, Owned: map[string][]string{}}
	if filter == nil {
		return obs
	}
	for name, ch := range filter.Chains {
		obs.Chains[name] = true
		switch {
		case name == InputHookChain:
			obs.InputHook = positions(ch.Rules, IsInputHook)
			obs.InputCheck = positions(ch.Rules, IsInputCheck)
		case name == "FORWARD":
			obs.ForwardHook = positions(ch.Rules, IsHook)
			obs.ForwardCheck = positions(ch.Rules, IsCheck)
			obs.DockerUserLive = len(positions(ch.Rules, isDockerUserJump)) > 0
		case name == HookChain:
			obs.Hook = positions(ch.Rules, IsHook)
			obs.Check = positions(ch.Rules, IsCheck)
			for _, r := range ch.Rules {
				obs.DockerUser = append(obs.DockerUser, "-A "+r.Chain+" "+r.Raw)
			}
		case IsOwnedChain(name):
			hashes := make([]string, len(ch.Rules))
			for i, r := range ch.Rules {
				if m := hashRe.FindStringSubmatch(r.Raw); m != nil {
					hashes[i] = m[1]
				}
			}
			obs.Owned[name] = hashes
		}
	}
	obs.DockerUserLive = obs.DockerUserLive && obs.Chains[HookChain]
	return obs
}

// positions returns the 1-based positions of the rules is accepts.
func positions(rs []iptsave.Rule, is func(string) bool) []int {
	var pos []int
	for i, r := range rs {
		if is("-A " + r.Chain + " " + r.Raw) {
			pos = append(pos, i+1)
		}
	}
	return pos
}

func IsHook(line string) bool {
	return strings.Contains(line, HookComment) && strings.HasSuffix(line, "-j "+ChainMain)
}

func IsCheck(line string) bool {
	return strings.Contains(line, CheckComment) && strings.HasSuffix(line, "-j "+ChainCheck)
}

// isDockerUserJump: Docker's jump from FORWARD to DOCKER-USER.
func isDockerUserJump(line string) bool { return strings.HasSuffix(line, "-j "+HookChain) }

func IsInputCheck(line string) bool {
	return strings.Contains(line, InputCheckComment) && strings.HasSuffix(line, "-j "+ChainInputCheck)
}

func IsInputHook(line string) bool {
	return strings.Contains(line, InputHookComment) && strings.HasSuffix(line, "-j "+ChainInput)
}
