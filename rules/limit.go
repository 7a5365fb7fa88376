package rules

import (
	"fmt"
	"strings"

	"github.com/dockmoat/dockmoat/config"
)

// Rate limits: `ufw limit` for published ports. A dockmoat.limit.PORT
// label, or `limit:` on a config allow rule, limits the new connections
// each source address (each /64 for IPv6) may open to an open port; the
// backends refuse the ones beyond the rate, after the deny lists and the
// trusted sources (which are never limited) and before the allows. A
// limit opens nothing: a limited port that no allow opens stays closed.

// labelLimitPfx starts the per-port limit labels: dockmoat.limit.8080=10/minute.
const labelLimitPfx = "dockmoat.limit."

// limiter is one limit a label or a config rule puts on some ports.
type limiter struct {
	spec   config.PortSpec
	limit  config.RateLimit
	origin string
}

// Limit is one limited published binding of a family.
type Limit struct {
	Container string
	Binding   PortBinding
	Rate      config.RateLimit
}

// parseLimitLabel reads dockmoat.limit.PORT[/PROTO]=N/UNIT[,burst=B].
func parseLimitLabel(k, v string) (limiter, error) {
	spec, err := config.ParsePortSpec(strings.TrimPrefix(k, labelLimitPfx))
	if err != nil || spec.All {
		msg := "the key must name one port or range, as in dockmoat.limit.8080/tcp"
		if err != nil {
			msg += ": " + err.Error()
		}
		return limiter{}, fmt.Errorf("%s", msg)
	}
	l, err := config.ParseRateLimit(v)
	if err != nil {
		return limiter{}, err
	}
	return limiter{spec: spec, limit: l, origin: "label " + k + "=" + v}, nil
}

// configLimiters are the limits of the config rules that select c.
func configLimiters(cfg config.Config, c Container) []limiter {
	var out []limiter
	for i, r := range cfg.Allow {
		if r.Limit.IsZero() || !r.Matches(c.Name, c.Labels) {
			continue
		}
		origin := r.Origin
		if origin == "" {
			origin = fmt.Sprintf("config allow[%d]", i)
		}
		for _, spec := range r.Ports {
			out = append(out, limiter{spec: spec, limit: r.Limit, origin: origin + " limit " + r.Limit.String()})
		}
	}
	return out
}

// applyLimits puts on each open decision the strictest limit that names
// its port, and says where it comes from.
func applyLimits(ds []Decision, ls []limiter) {
	for i := range ds {
		d := &ds[i]
		if !d.Open {
			continue
		}
		var from string
		for _, l := range ls {
			if l.spec.Matches(d.Binding.HostPort, d.Binding.Proto) && l.limit.Stricter(d.Limit) {
				d.Limit, from = l.limit, l.origin
			}
		}
		if from != "" {
			d.Reason += "; new connections limited to " + d.Limit.String() + " per source by " + from
		}
	}
}

// limitProblems warns about limit labels that limit nothing: their port
// is not published, or no allow opens it.
func limitProblems(c Container, ls []limiter, ds []Decision) []Problem {
	var out []Problem
	for _, l := range ls {
		if !strings.HasPrefix(l.origin, "label ") {
			continue
		}
		published, open := false, false
		for _, d := range ds {
			if l.spec.Matches(d.Binding.HostPort, d.Binding.Proto) {
				published, open = true, open || d.Open
			}
		}
		key := labelLimitPfx + l.spec.String()
		switch {
		case !published:
			out = append(out, Problem{Container: c.Name, Label: key, Value: c.Labels[key], Msg: fmt.Sprintf("port %s is not published by this container, so the limit applies to nothing (labels name the published, host port)", l.spec)})
		case !open:
			out = append(out, Problem{Container: c.Name, Label: key, Value: c.Labels[key], Msg: fmt.Sprintf("port %s is closed (no allow opens it): a limit opens nothing; add dockmoat.allow to open it", l.spec)})
		}
	}
	return out
}

// limitDescPfx starts the description of every limit rule, on both
// backends: the metrics find the rules' counters by it.
const limitDescPfx = "rate limit "

// Desc describes the limit's rule, on the forward path or via
// docker-proxy (the rule's comment; ParseLimitDesc reads it back). The
// container comes last: a backend that shortens comments cuts its name.
func (l Limit) Desc(proxy bool) string {
	via := ""
	if proxy {
		via = " via docker-proxy"
	}
	return Desc(fmt.Sprintf("%s%d/%s%s, beyond %d/%s burst %d per source, of %s", limitDescPfx, l.Binding.HostPort, l.Binding.Proto,
		via, l.Rate.Rate, l.Rate.Unit(), l.Rate.Burst, l.Container))
}

// ParseLimitDesc reads a rule description that Limit.Desc wrote: the
// published port ("8080/tcp"), the container (or the start of its name)
// and the path.
func ParseLimitDesc(s string) (port, container string, proxy, ok bool) {
	rest, found := strings.CutPrefix(s, limitDescPfx)
	if !found {
		return "", "", false, false
	}
	head, container, found := strings.Cut(rest, " per source, of ")
	port, _, _ = strings.Cut(head, ",")
	if !found || !strings.Contains(port, "/") {
		return "", "", false, false
	}
	port, proxy = strings.CutSuffix(port, " via docker-proxy")
	return port, container, proxy, true
}
