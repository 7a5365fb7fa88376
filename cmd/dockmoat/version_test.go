package main

import (
	"runtime/debug"
	"testing"
)

func TestVersionFrom(t *testing.T) {
	vcs := func(kv ...string) []debug.BuildSetting {
		var out []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			out = append(out, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	cases := []struct {
		set  string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"v1.2.0", &debug.BuildInfo{Main: debug.Module{Version: "v9.9.9"}}, true, "v1.2.0"}, // -X wins
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "v1.3.0"}}, true, "v1.3.0"},    // go install @v1.3.0
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"},
			Settings: vcs("vcs.revision", "0123456789abcdef0123", "vcs.modified", "true")}, true, "dev-0123456789ab-dirty"},
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("vcs.revision", "abc")}, true, "dev-abc"},
		{"dev", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "dev"},
		{"dev", nil, false, "dev"},
	}
	for _, tc := range cases {
		if got := versionFrom(tc.set, tc.bi, tc.ok); got != tc.want {
			t.Errorf("versionFrom(%q, %+v) = %q, want %q", tc.set, tc.bi, got, tc.want)
		}
	}
}
