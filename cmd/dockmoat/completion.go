package main

import (
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Completion scripts are made from the commands and their flags, so they
// cannot drift from them.

// infoHelp is `dockmoat help CMD` for the commands that only print.
var infoHelp = map[string]string{
	"version":    "dockmoat version: print the version (also --version)\n\nUsage:\n  dockmoat version\n",
	"man":        "dockmoat man: print the manual page dockmoat(8), or with config dockmoat.yaml(5) (roff)\n\nUsage:\n  dockmoat man | man -l -\n  dockmoat man config | man -l -\n",
	"completion": "dockmoat completion: print a shell completion script\n\nUsage:\n  source <(dockmoat completion bash)\n  dockmoat completion zsh >\"${fpath[1]}/_dockmoat\"\n  dockmoat completion fish >~/.config/fish/completions/dockmoat.fish\n",
	"help":       "dockmoat help: this help, or a command's flags\n\nUsage:\n  dockmoat help [COMMAND]\n",
}

// completionShells are the shells `dockmoat completion` writes for.
var completionShells = map[string]func(io.Writer){"bash": completionBash, "zsh": completionZsh, "fish": completionFish}

// allCommands lists every command, sorted.
func allCommands() []string {
	cmds := []string{"completion", "help", "man", "version"}
	for c := range summaries {
		cmds = append(cmds, c)
	}
	slices.Sort(cmds)
	return cmds
}

// flagsOf lists a command's flags (none for the commands that only print).
func flagsOf(cmd string) []*flag.Flag {
	if _, ok := summaries[cmd]; !ok {
		return nil
	}
	var opt options
	var out []*flag.Flag
	commandFlags(cmd, &opt).VisitAll(func(f *flag.Flag) { out = append(out, f) })
	return out
}

// summary is a command's one-line description.
func summary(cmd string) string {
	if s, ok := summaries[cmd]; ok {
		return s
	}
	first, _, _ := strings.Cut(infoHelp[cmd], "\n")
	_, s, _ := strings.Cut(first, ": ")
	return s
}

func completionBash(out io.Writer) {
	cmds := allCommands()
	fmt.Fprintf(out, "# bash completion for dockmoat: source <(dockmoat completion bash)\n_dockmoat() {\n")
	fmt.Fprintf(out, "  local cur=${COMP_WORDS[COMP_CWORD]}\n")
	fmt.Fprintf(out, "  if [ \"$COMP_CWORD\" -eq 1 ]; then\n    COMPREPLY=($(compgen -W %q -- \"$cur\"))\n    return\n  fi\n", strings.Join(cmds, " "))
	fmt.Fprintf(out, "  case ${COMP_WORDS[1]} in\n")
	for _, c := range cmds {
		words := []string{"--help"}
		switch c {
		case "help":
			words = cmds
		case "completion":
			words = []string{"bash", "fish", "zsh"}
		}
		for _, f := range flagsOf(c) {
			words = append(words, "--"+f.Name)
		}
		fmt.Fprintf(out, "    %s) COMPREPLY=($(compgen -W %q -- \"$cur\")) ;;\n", c, strings.Join(words, " "))
	}
	fmt.Fprintf(out, "  esac\n}\ncomplete -F _dockmoat dockmoat\n")
}

func completionZsh(out io.Writer) {
	esc := strings.NewReplacer(":", `\:`, "'", `'\''`, "[", `\[`, "]", `\]`)
	fmt.Fprintf(out, "#compdef dockmoat\n# zsh completion for dockmoat: dockmoat completion zsh >\"${fpath[1]}/_dockmoat\"\n_dockmoat() {\n  local -a cmds\n  cmds=(\n")
	for _, c := range allCommands() {
		fmt.Fprintf(out, "    '%s:%s'\n", c, esc.Replace(summary(c)))
	}
	fmt.Fprintf(out, "  )\n  if (( CURRENT == 2 )); then\n    _describe 'command' cmds\n    return\n  fi\n  case $words[2] in\n")
	for _, c := range allCommands() {
		args := []string{"'--help[show the flags]'"}
		for _, f := range flagsOf(c) {
			args = append(args, fmt.Sprintf("'--%s[%s]'", f.Name, esc.Replace(f.Usage)))
		}
		switch c {
		case "help":
			args = []string{"'1:command:(" + strings.Join(allCommands(), " ") + ")'"}
		case "completion":
			args = []string{"'1:shell:(bash fish zsh)'"}
		}
		fmt.Fprintf(out, "    %s) _arguments %s ;;\n", c, strings.Join(args, " "))
	}
	fmt.Fprintf(out, "  esac\n}\n_dockmoat \"$@\"\n")
}

func completionFish(out io.Writer) {
	esc := strings.NewReplacer(`\`, `\\`, "'", `\'`)
	fmt.Fprintf(out, "# fish completion for dockmoat: dockmoat completion fish >~/.config/fish/completions/dockmoat.fish\ncomplete -c dockmoat -f\n")
	for _, c := range allCommands() {
		fmt.Fprintf(out, "complete -c dockmoat -n __fish_use_subcommand -a %s -d '%s'\n", c, esc.Replace(summary(c)))
	}
	for _, c := range allCommands() {
		cond := "__fish_seen_subcommand_from " + c
		for _, f := range flagsOf(c) {
			fmt.Fprintf(out, "complete -c dockmoat -n '%s' -l %s -d '%s'\n", cond, f.Name, esc.Replace(f.Usage))
		}
	}
	fmt.Fprintf(out, "complete -c dockmoat -n '__fish_seen_subcommand_from help' -a '%s'\n", strings.Join(allCommands(), " "))
	fmt.Fprintf(out, "complete -c dockmoat -n '__fish_seen_subcommand_from completion' -a 'bash fish zsh'\n")
}
