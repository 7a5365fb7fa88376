package integration

import (
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dockmoat/dockmoat/integration/testbed"
)

// urlListFollowed: a list at a URL served in the bed (from the outside,
// A:7091) opens its port to its sources; a refresh adds B, a failing URL
// keeps the last copy (plan says the fetch failed), a refresh removes B
// again; a list never fetched (404) opens nothing until it is served.
func urlListFollowed(t *testing.T, e *env, port int) {
	var mu sync.Mutex
	served := map[string]string{"/cdn.txt": A.String() + "\n"}
	failing := false
	serve := func(path, body string, fail bool) {
		mu.Lock()
		defer mu.Unlock()
		served[path], failing = body, fail
	}
	l := e.listenOutside(t, 7091)
	go func() {
		_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			body, ok := served[r.URL.Path]
			switch {
			case failing && r.URL.Path == "/cdn.txt":
				http.Error(w, "down for maintenance", http.StatusInternalServerError)
			case !ok:
				http.NotFound(w, r)
			default:
				_, _ = w.Write([]byte(body))
			}
		}))
	}()
	base := "http://" + netip.AddrPortFrom(A, 7091).String()
	e.reload(t, "lists:\n  cdn: {url: "+base+"/cdn.txt, refresh: 1s}\n  later: {url: "+base+"/later.txt, refresh: 1s}\n")
	defer e.reload(t, "{}\n")
	p, q := strconv.Itoa(port), strconv.Itoa(port+1)
	e.run(t, testbed.Spec{Name: "cdnlisted", Labels: map[string]string{"dockmoat.allow": p, "dockmoat.from": "list:cdn"}, Publish: []string{p + ":80"}, Serve: []string{"80"}})
	e.run(t, testbed.Spec{Name: "laterlisted", Labels: map[string]string{"dockmoat.allow": q, "dockmoat.from": "list:later"}, Publish: []string{q + ":80"}, Serve: []string{"80"}})
	e.sync(t)
	// Fetched within a second, read within the list poll (5 s).
	eventually := func(c check) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); e.try(c) != "" && time.Now().Before(deadline); {
			time.Sleep(300 * time.Millisecond)
		}
		e.expect(t, c)
	}
	eventually(out("tcp", A, port, true, "cdnlisted"))
	e.expect(t, out("tcp", B, port, false, ""), out("tcp", A, port+1, false, ""))
	serve("/cdn.txt", A.String()+"\n"+B.String()+"\n", false)
	eventually(out("tcp", B, port, true, "cdnlisted"))
	serve("/cdn.txt", "", true)
	plan := ""
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(plan, "LAST FETCH FAILED") && time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		plan = e.dockmoat(t, "plan", "--config", e.dm.Config)
	}
	if !strings.Contains(plan, "LAST FETCH FAILED") || !strings.Contains(plan, "list later") || !strings.Contains(plan, "never fetched") {
		t.Errorf("plan does not say the fetch failed and the other list was never fetched:\n%s", plan)
	}
	time.Sleep(5 * time.Second) // a list poll after the failure: nothing to read again
	e.expect(t, out("tcp", A, port, true, "cdnlisted"), out("tcp", B, port, true, "cdnlisted"))
	serve("/cdn.txt", A.String()+"\n", false)
	eventually(out("tcp", B, port, false, ""))
	e.expect(t, out("tcp", A, port, true, "cdnlisted"))
	serve("/later.txt", B.String()+"\n", false)
	eventually(out("tcp", B, port+1, true, "laterlisted"))
	e.expect(t, out("tcp", A, port+1, false, ""))
}
