package daemon

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/dockmoat/dockmoat/audit/report"
)

// Each row beyond its policy is counted and logged with its container and
// port; the others are not.
func TestLogBeyond(t *testing.T) {
	var buf bytes.Buffer
	log := logrus.New()
	log.SetOutput(&buf)
	rep := report.Report{
		Rows: []report.Row{
			{Container: "db", HostPort: 5432, Proto: "tcp", Beyond: true, Reason: "rule '-j ACCEPT' in DOCKER-USER lets it through"},
			{Container: "web", HostPort: 443, Proto: "tcp"},
		},
		Egress: []report.EgressRow{{Container: "job", Family: "ipv4", Outside: "open", Host: "refused", Beyond: true}},
	}
	if n := logBeyond(log, rep); n != 2 {
		t.Errorf("counted %d, want 2", n)
	}
	out := buf.String()
	if !strings.Contains(out, "container=db") || !strings.Contains(out, "port=5432") || !strings.Contains(out, "DOCKER-USER") ||
		!strings.Contains(out, "container=job") || strings.Contains(out, "container=web") {
		t.Errorf("log:\n%s", out)
	}
}
