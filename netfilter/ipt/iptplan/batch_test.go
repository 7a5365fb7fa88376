package iptplan

import (
	"regexp"
	"testing"

	"github.com/dockmoat/dockmoat/config"
	"github.com/dockmoat/dockmoat/rules"
	"github.com/dockmoat/dockmoat/rules/policy"
)

var hashes = regexp.MustCompile(`dockmoat:[0-9a-f]{16} `)

func TestRestoreChains(t *testing.T) {
	res := policy.Build(config.Default(), rules.Snapshot{Bridges: []string{"docker0"}}, rules.IPv4, policy.Options{})
	got := hashes.ReplaceAllString(RestoreChains(Render(config.Default(), res, RenderOptions{}), []string{ChainIngress}), "dockmoat:H ")
	want := "*filter\n:DOCKMOAT-INGRESS - [0:0]\n" +
		`-A DOCKMOAT-INGRESS -m comment --comment "dockmoat:H default deny" -j DROP` + "\nCOMMIT\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestDeleteBatch(t *testing.T) {
	got := DeleteBatch([]string{"DOCKMOAT", "DOCKMOAT-INGRESS"})
	want := "*filter\n:DOCKMOAT - [0:0]\n:DOCKMOAT-INGRESS - [0:0]\n-X DOCKMOAT\n-X DOCKMOAT-INGRESS\nCOMMIT\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
