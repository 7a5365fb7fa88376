package main

import "runtime/debug"

// version is set at build time with -ldflags "-X main.version=…" (make
// build, make release); otherwise the build info tells it.
var version = "dev"

// versionString is the version dockmoat reports: the one set at build
// time, else the module version (`go install …/cmd/dockmoat@v1.2.3`),
// else the VCS revision of a `go build` in a checkout ("dev-<rev>", with
// "-dirty" when the tree had changes), else "dev".
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	return versionFrom(version, bi, ok)
}

func versionFrom(set string, bi *debug.BuildInfo, ok bool) string {
	if set != "dev" || !ok {
		return set
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return set
	}
	return "dev-" + rev[:min(12, len(rev))] + dirty
}
