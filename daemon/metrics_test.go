package daemon

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/dockmoat/dockmoat/metrics"
)

// A taken metrics address must not stop the daemon: serveMetrics says
// so, returns at once, and serves once the address is free.
func TestMetricsAddressTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := taken.Addr().String()
	defer func(d time.Duration) { metricsRetry = d }(metricsRetry)
	metricsRetry = 20 * time.Millisecond
	log, hook := test.NewNullLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := serveMetrics(ctx, Options{MetricsAddr: addr}, metrics.New(), log)
	defer stop()
	waitFor(t, func() bool { return logged(hook, logrus.ErrorLevel, "the firewall is enforced all the same") })
	taken.Close()
	waitFor(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if n := count(hook, logrus.ErrorLevel); n != 1 {
		t.Errorf("%d errors logged for one taken address; want 1 (retries are quiet)", n)
	}
}

func TestMetricsAddressMalformed(t *testing.T) {
	log, hook := test.NewNullLogger()
	stop := serveMetrics(context.Background(), Options{MetricsAddr: "9323"}, metrics.New(), log)
	defer stop()
	if !logged(hook, logrus.ErrorLevel, "not HOST:PORT") {
		t.Errorf("a malformed --metrics-addr is not reported: %v", hook.AllEntries())
	}
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("condition not met within 10 s")
}

func logged(hook *test.Hook, level logrus.Level, text string) bool {
	for _, e := range hook.AllEntries() {
		if e.Level == level && strings.Contains(e.Message, text) {
			return true
		}
	}
	return false
}

func count(hook *test.Hook, level logrus.Level) int {
	n := 0
	for _, e := range hook.AllEntries() {
		if e.Level == level {
			n++
		}
	}
	return n
}
