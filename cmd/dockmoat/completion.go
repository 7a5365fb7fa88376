package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// completionBash prints a bash completion script made from the commands
// and their flags, so it cannot drift from them. zsh users can load it
// with `autoload bashcompinit && bashcompinit`.
func completionBash(out io.Writer) {
	cmds := []string{"help", "version"}
	for c := range summaries {
		cmds = append(cmds, c)
	}
	slices.Sort(cmds)
	fmt.Fprintf(out, "# bash completion for dockmoat: source <(dockmoat completion bash)\n_dockmoat() {\n")
	fmt.Fprintf(out, "  local cur=${COMP_WORDS[COMP_CWORD]}\n")
	fmt.Fprintf(out, "  if [ \"$COMP_CWORD\" -eq 1 ]; then\n    COMPREPLY=($(compgen -W %q -- \"$cur\"))\n    return\n  fi\n", strings.Join(cmds, " "))
	fmt.Fprintf(out, "  case ${COMP_WORDS[1]} in\n")
	for _, c := range cmds {
		if _, ok := summaries[c]; !ok {
			continue
		}
		var opt options
		var flags []string
		commandFlags(c, &opt).VisitAll(func(f *flag.Flag) { flags = append(flags, "--"+f.Name) })
		flags = append(flags, "--help")
		fmt.Fprintf(out, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", c, strings.Join(flags, " "))
	}
	fmt.Fprintf(out, "    help) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", strings.Join(cmds, " "))
	fmt.Fprintf(out, "  esac\n}\ncomplete -F _dockmoat dockmoat\n")
}
