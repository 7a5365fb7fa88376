package iptplan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/dockmoat/dockmoat/rules"
)

// Rate limits (rules/limit.go) are hashlimit rules: one per limited
// binding, after the deny lists and the trusted sources and before the
// allows, in DOCKMOAT-INGRESS (DNATed connections) and DOCKMOAT-INPUT
// (docker-proxy). A connection beyond the rate is refused like a denied
// source: dropped on the forward path, not let through (so
// DOCKMOAT-INPUT-CHECK drops it) on the input path. Each rule keeps its
// own table of sources (its --hashlimit-name); a source is forgotten
// only once its allowance has refilled, so forgetting it changes
// nothing. The rule's packet counter is the refusals.

// limitRules adds the family's limits to ch: forward for INGRESS, else
// the docker-proxy form for DOCKMOAT-INPUT.
func limitRules(ch *OwnedChain, limits []rules.Limit, fam rules.Family, forward bool) {
	for _, l := range limits {
		b := l.Binding
		var spec []string
		if forward {
			spec = []string{"-p", b.Proto, "-m", "conntrack", "--ctstate", "DNAT"}
			if b.HostIP.IsValid() && !b.HostIP.IsUnspecified() {
				spec = append(spec, "--ctorigdst", b.HostIP.Unmap().String()+bits(fam))
			}
			spec = append(spec, "--ctorigdstport", strconv.Itoa(int(b.HostPort)))
		} else {
			spec = proxySpec(b, fam)
		}
		spec = append(spec, hashlimit(l, fam)...)
		verdict := "DROP"
		if !forward {
			verdict = "RETURN"
		}
		ch.add(l.Desc(!forward), append(spec, "-j", verdict)...)
	}
}

// hashlimit matches a source's new connections beyond the limit.
func hashlimit(l rules.Limit, fam rules.Family) []string {
	unit := map[time.Duration]string{time.Second: "sec", time.Minute: "min", time.Hour: "hour"}[l.Rate.Per]
	mask := "32"
	if fam == rules.IPv6 {
		mask = "64"
	}
	expire := max(l.Rate.Refill(), time.Second)
	return []string{"-m", "hashlimit", "--hashlimit-above", fmt.Sprintf("%d/%s", l.Rate.Rate, unit),
		"--hashlimit-burst", strconv.Itoa(int(l.Rate.Burst)), "--hashlimit-mode", "srcip", "--hashlimit-srcmask", mask,
		"--hashlimit-htable-expire", strconv.FormatInt(expire.Milliseconds(), 10), "--hashlimit-name", LimitName(l, fam)}
}

// LimitName names a limit's table of sources: at most 15 characters (the
// kernel's limit), distinct per family, binding and rate, so that two
// rules never share a table with different settings.
func LimitName(l rules.Limit, fam rules.Family) string {
	h := sha256.Sum256(fmt.Appendf(nil, "%d %s %s %d %s", fam, l.Binding.Proto, l.Binding.HostIP, l.Binding.HostPort, l.Rate))
	return "dm-" + hex.EncodeToString(h[:])[:12]
}
