package report

import (
	"bytes"
	"strings"
	"testing"
)

// Each node's JSON (after any stray line) becomes its part of one report:
// a node beyond policy makes the cluster beyond policy; a node without a
// report is named, never taken as clean.
func TestClusterReport(t *testing.T) {
	var a bytes.Buffer
	if err := WriteJSON(&a, Report{Protected: true, Rows: []Row{{Container: "web", HostIP: "0.0.0.0", HostPort: 8080, ContainerPort: 80, Proto: "tcp",
		Exposure: Closed, Reason: "closed by dockmoat default deny"}}}); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := WriteJSON(&b, Report{Rows: []Row{{Container: "db", HostIP: "0.0.0.0", HostPort: 5432, ContainerPort: 5432, Proto: "tcp",
		Exposure: Public, Beyond: true, Reason: "no dockmoat rule"}}}); err != nil {
		t.Fatal(err)
	}
	c := ClusterReport{Nodes: []NodeReport{
		ParseNodeReport("node-a", append([]byte("level=warning msg=x\n"), a.Bytes()...)),
		ParseNodeReport("node-b", b.Bytes()),
		ParseNodeReport("node-c", []byte("exec format error\n")),
	}}
	if c.Nodes[0].Err != "" || len(c.Nodes[0].Report.Rows) != 1 || c.Nodes[2].Err == "" || !strings.Contains(c.Nodes[2].Err, "exec format error") {
		t.Fatalf("parsed %+v", c.Nodes)
	}
	if !c.Beyond() || !c.Incomplete() {
		t.Errorf("beyond %v incomplete %v", c.Beyond(), c.Incomplete())
	}
	var out bytes.Buffer
	if err := WriteClusterTable(&out, c); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"node-a: PROTECTED", "node-b: NOT PROTECTED", "node-c: NOT AUDITED", "NODE", "node-b  db",
		"0.0.0.0:5432->5432/tcp", "NO: beyond policy"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
