package daemon

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"

	"github.com/dockmoat/dockmoat/config"
)

// A missing --config file or an invalid one gives the fail-closed config
// and one error line naming the file, the key and the fix.
func TestLoadOrFailClosed(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	_ = os.WriteFile(bad, []byte("trusted_sources: [10.0.0.0/8]\nufw: maybe\n"), 0o600)
	good := filepath.Join(dir, "good.yaml")
	_ = os.WriteFile(good, []byte("ufw: on\n"), 0o600)
	for _, tc := range []struct {
		path string
		want []string
	}{
		{filepath.Join(dir, "nope.yaml"), []string{"nope.yaml does not exist", "config.example.yaml", "fail-closed", "reload"}},
		{bad, []string{"bad.yaml", "ufw:", "maybe", "not one of auto, on, off", "fail-closed", "kill -HUP"}},
	} {
		var logs bytes.Buffer
		log := textLogger(&logs)
		cfg, err := LoadOrFailClosed(Options{ConfigPath: tc.path, ConfigSet: true}, log)
		if err == nil || cfg.UFW != config.UFWOff || len(cfg.TrustedSources) != 0 || len(cfg.Allow) != 0 {
			t.Errorf("%s: want the fail-closed config and an error, got %+v, %v", tc.path, cfg, err)
		}
		if n := strings.Count(logs.String(), "level=error"); n != 1 {
			t.Errorf("%s: want one error line, got %d:\n%s", tc.path, n, logs.String())
		}
		for _, w := range tc.want {
			if !strings.Contains(logs.String(), w) {
				t.Errorf("%s: log lacks %q:\n%s", tc.path, w, logs.String())
			}
		}
	}
	log := textLogger(&bytes.Buffer{})
	if cfg, err := LoadOrFailClosed(Options{ConfigPath: good, ConfigSet: true}, log); err != nil || cfg.UFW != config.UFWOn {
		t.Errorf("valid file: %+v %v", cfg, err)
	}
}

// The mode is logged when a pass runs in another one than the last, and
// enforcing, the default, is not announced at start.
func TestModeLogger(t *testing.T) {
	log, hook := test.NewNullLogger()
	say := modeLogger(log)
	say(false)
	say(false)
	if n := len(hook.AllEntries()); n != 0 {
		t.Fatalf("enforcing from the start: %d log line(s)", n)
	}
	say(true)
	say(true)
	say(false)
	if got := hook.AllEntries(); len(got) != 2 || !strings.Contains(got[0].Message, "OBSERVE") || !strings.Contains(got[1].Message, "enforcing") {
		t.Errorf("log: %v", got)
	}
}

// textLogger logs as `dockmoat run --log-format text` does, into out.
func textLogger(out io.Writer) *logrus.Logger {
	log := logrus.New()
	log.SetOutput(out)
	log.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	return log
}
