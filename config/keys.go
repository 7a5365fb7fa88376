package config

// KeyDoc documents one key of the config file: what dockmoat.yaml(5)
// says of it (`dockmoat man config`). TestKeysDocumented keeps the list
// equal to the keys the parser knows, and every key in the commented
// example (deploy/config.example.yaml) and the reference.
type KeyDoc struct {
	Key    string // the top-level key, or PARENT.KEY for a rule's key
	Values string // what it takes
	Doc    string
}

// Keys are the config file's keys, in the order the example gives them.
var Keys = []KeyDoc{
	{"trusted_sources", "list of CIDRs, addresses or iface:NAME", "sources that may reach every published port (none by default; private ranges are not trusted wholesale); iface:NAME (a trailing * a glob, iface:wg*) trusts whatever arrives on that interface"},
	{"deny_sources", "list of CIDRs, addresses or iface:NAME", "sources that may reach no published port: refused before any allow, trusted_sources included, on the DNAT and docker-proxy paths; iface:NAME refuses whatever arrives on that interface; the host's own ports are not touched"},
	{"ufw", "auto, on or off", "auto (default): traffic dockmoat does not open goes through ufw-user-forward, so `ufw route allow` rules keep working; on: the same, and an error when that chain is missing; off: ufw route rules open nothing"},
	{"ufw_input", "true or false", "true: a plain `ufw allow PORT[/PROTO] [from SRC]` rule also opens the published host port PORT to SRC (iptables backend; rules after a ufw deny that may refuse part of them, ufw limit and rules on an interface or address are not translated, and the log says which)"},
	{"mode", "enforce or observe", "enforce (default); observe: what the policy refuses is let through, counted and logged; `dockmoat suggest` prints the allow rules that keep it working, `dockmoat enforce` drops it again (the commands win over this key)"},
	{"lists", "NAME: {file: PATH} or NAME: {url: URL, refresh: DURATION}", "named source lists: a file of CIDRs or addresses, one a line, # comments; list:NAME stands for its sources wherever a source is written (trusted_sources, deny_sources, from, the dockmoat.from and dockmoat.allow.PORT labels); a changed file is read again without a restart, and a list that cannot be read opens nothing; a URL list is fetched every refresh (default 1h), kept in the state directory, replaced only by a copy that parses, and opens nothing until first fetched"},
	{"log_blocked", "true or false", "a rate-limited kernel log of blocked new connections, prefix \"[DOCKMOAT BLOCK] \""},
	{"ipv6_forward_hook", "true or false", "Docker 20.10 with --ip6tables only: hook the top of ip6tables FORWARD, where Docker 23 and later have DOCKER-USER"},
	{"ipset", "auto or off", "auto (default): allowed ports and the ban sets live in kernel ipsets; off: one rule per allowed port, no ipsets (no ban sets either)"},
	{"image_labels", "ignore or trust", "ignore (default): dockmoat labels that come with a container's image open nothing; trust: obey them too"},
	{"allow", "list of rules", "opens ports of containers you cannot label; a port's sources are the union of every rule and label that opens it"},
	{"allow.container", "name or glob", "the containers the rule selects, by name"},
	{"allow.service", "PROJECT/SERVICE, STACK/SERVICE or a Swarm service", "the containers the rule selects, by compose or Swarm service (globs allowed)"},
	{"allow.ports", "list of PORT[-PORT][/PROTO] or *", "the published (host) ports opened"},
	{"allow.from", "list of CIDRs, addresses or iface:NAME", "only these sources; iface:NAME (a trailing * a glob) opens to whatever arrives on that interface, whatever its address (a VPN: iface:wg0); leave the key out to open to everyone (an empty from: is an error)"},
	{"allow.limit", "N/second|minute|hour[,burst=B]", "new connections per source address (per /64 for IPv6) beyond the rate are refused; B (default N) may come at once; trusted sources are not limited"},
	{"egress", "list of rules", "limits the outbound connections of containers you cannot label"},
	{"egress.container", "name or glob", "the containers the rule selects, by name"},
	{"egress.service", "PROJECT/SERVICE, STACK/SERVICE or a Swarm service", "the containers the rule selects, by service"},
	{"egress.policy", "deny or allow", "deny (default): new connections leaving the container's network or to the host are refused unless allowed"},
	{"egress.allow", "list of CIDR[:PORT[-PORT]][/PROTO]", "destinations a deny container may reach"},
	{"egress_dns", "list of addresses", "resolvers deny containers may query (53/udp and 53/tcp)"},
}
