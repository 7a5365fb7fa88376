package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/dockmoat/dockmoat/config"
)

// writeMan prints dockmoat(8) in roff, made from the commands, their
// summaries and flags (as the completions are), so the page cannot drift
// from the binary. The .deb ships it (hack/release.sh).
func writeMan(out io.Writer) {
	fmt.Fprintf(out, ".TH DOCKMOAT 8 \"\" \"dockmoat %s\" \"System Administration\"\n", roff(versionString()))
	fmt.Fprint(out, ".SH NAME\ndockmoat \\- keep Docker's published ports closed unless a label or the config opens them\n")
	fmt.Fprint(out, ".SH SYNOPSIS\n.B dockmoat\n.I command\n.RI [ flags ]\n")
	fmt.Fprint(out, ".SH DESCRIPTION\nDocker publishes a container port with a DNAT rule, so the packet crosses FORWARD and never INPUT: "+
		"a host firewall that denies the port does not stop it. dockmoat closes every published port, on every path (IPv4 and IPv6, "+
		"DNAT and docker-proxy), unless a container label or the config file opens it, optionally for given sources; it repairs "+
		"its rules when someone else changes them, never opens a port when it stops, and \\fBdockmoat audit\\fR tells who can "+
		"really reach each published port and why.\n")
	fmt.Fprint(out, ".SH COMMANDS\n")
	for _, c := range allCommands() {
		fmt.Fprintf(out, ".TP\n.B %s\n%s\n", c, roff(summary(c)))
		for _, f := range flagsOf(c) {
			fmt.Fprintf(out, ".RS\n.TP\n.B \\-\\-%s\n%s", roff(f.Name), roff(f.Usage))
			if def := f.DefValue; def != "" && def != "false" {
				fmt.Fprintf(out, " (default: %s)", roff(def))
			}
			fmt.Fprint(out, "\n.RE\n")
		}
	}
	fmt.Fprint(out, ".SH LABELS\n.TP\n.B dockmoat.allow\npublished ports or ranges opened to everyone (\\fB*\\fR: all)\n"+
		".TP\n.B dockmoat.from\nonly these sources may reach the ports of dockmoat.allow\n"+
		".TP\n.B dockmoat.allow.\\fIPORT\\fR\none port or range opened to these sources only\n"+
		".TP\n.B dockmoat.egress\n\\fBdeny\\fR limits what the container may connect to; \\fBdockmoat.egress.allow\\fR lists the destinations\n")
	fmt.Fprint(out, ".SH FILES\n.TP\n.I /etc/dockmoat/config.yaml\nthe config file (optional; \\fBdockmoat check-config\\fR checks it)\n"+
		".TP\n.I /var/lib/dockmoat\nstate: the disable switch, the daemon lock, the last pass for \\fBdockmoat status\\fR\n")
	fmt.Fprint(out, ".SH EXIT STATUS\n0 on success; 1 when \\fBaudit\\fR finds a port reachable beyond policy, \\fBplan \\-\\-check\\fR a difference, "+
		"\\fBstatus\\fR no protection, or \\fBcheck-config\\fR an invalid file; 2 on a usage error or a failure.\n")
	fmt.Fprint(out, ".SH SEE ALSO\n.BR iptables (8),\n.BR nft (8),\n.BR ufw (8);\nhttps://github.com/dockmoat/dockmoat/tree/main/docs\n")
}

// writeConfigMan prints dockmoat.yaml(5) in roff, made from config.Keys
// (which a test keeps equal to the keys the parser takes).
func writeConfigMan(out io.Writer) {
	fmt.Fprintf(out, ".TH DOCKMOAT.YAML 5 \"\" \"dockmoat %s\" \"File Formats\"\n", roff(versionString()))
	fmt.Fprint(out, ".SH NAME\ndockmoat.yaml \\- dockmoat's configuration file\n")
	fmt.Fprint(out, ".SH DESCRIPTION\n.I /etc/dockmoat/config.yaml\nis optional, and so is every key: without it dockmoat closes every published port that no container label opens. "+
		"Unknown keys and bad values are errors (\\fBdockmoat check-config\\fR names the line, the key and the fix); the daemon then runs fail-closed "+
		"until the file is fixed and reloaded (\\fBsystemctl reload dockmoat\\fR, or SIGHUP). The commented example is "+
		"/usr/share/doc/dockmoat/examples/config.yaml.\n.SH KEYS\n")
	for _, k := range config.Keys {
		fmt.Fprintf(out, ".TP\n.B %s\n.I %s\n\\(em %s\n", roff(k.Key), roff(k.Values), roff(k.Doc))
	}
	fmt.Fprint(out, ".SH SEE ALSO\n.BR dockmoat (8)\n")
}

// roff escapes text for a roff line: backslashes, and a leading dot or
// quote that would start a request.
func roff(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, "-", `\-`)
	if strings.HasPrefix(s, ".") || strings.HasPrefix(s, "'") {
		s = `\&` + s
	}
	return s
}
