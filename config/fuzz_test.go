package config

import (
	"testing"
)

// FuzzParse feeds arbitrary bytes to the config parser: it must return a
// config or an error, never panic, and a config it accepts is valid.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"",
		"{}",
		"trusted_sources: [10.0.0.0/8]\nufw: off\nlog_blocked: true\n",
		"allow:\n  - container: 'web*'\n    ports: ['80', '443/tcp', '9000-9010']\n    from: ['198.51.100.0/24']\n",
		"allow:\n  - service: shop/api\n    ports: ['*']\n",
		"ufw: [on]",
		"allow: {container: x}",
		"trusted_sources: 10.0.0.0/8",
		"- - - [",
		"allow:\n  - container: '['\n    ports: ['1']\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			return
		}
		switch cfg.UFW {
		case UFWAuto, UFWOn, UFWOff:
		default:
			t.Fatalf("accepted ufw mode %q", cfg.UFW)
		}
		for _, a := range cfg.Allow {
			if len(a.Ports) == 0 || (a.Container == "" && a.Service == "") || (!a.From.Any && len(a.From.Prefixes) == 0) {
				t.Fatalf("accepted an incomplete allow rule: %+v", a)
			}
		}
	})
}
