package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseRateLimit(t *testing.T) {
	for in, want := range map[string]RateLimit{
		"10/minute":            {Rate: 10, Per: time.Minute, Burst: 10},
		"10/minute,burst=5":    {Rate: 10, Per: time.Minute, Burst: 5},
		" 3/second , burst=20": {Rate: 3, Per: time.Second, Burst: 20},
		"100/hour":             {Rate: 100, Per: time.Hour, Burst: 100},
	} {
		got, err := ParseRateLimit(in)
		if err != nil || got != want {
			t.Errorf("%q: %+v %v, want %+v", in, got, err, want)
		}
		if again, err := ParseRateLimit(got.String()); err != nil || again != got {
			t.Errorf("%q: String %q does not parse back: %+v %v", in, got.String(), again, err)
		}
	}
	for _, in := range []string{"", "10", "10/min", "10/day", "0/second", "-1/second", "10001/second", "x/second",
		"10/second,burst=0", "10/second,burst=10001", "10/second,bust=5", "10/second,5"} {
		if _, err := ParseRateLimit(in); err == nil || !strings.Contains(err.Error(), in) {
			t.Errorf("%q: want an error naming the value, got %v", in, err)
		}
	}
}

func TestRateLimitOrder(t *testing.T) {
	perMin := RateLimit{Rate: 60, Per: time.Minute, Burst: 60}
	perSec := RateLimit{Rate: 1, Per: time.Second, Burst: 1}
	if !perSec.Stricter(perMin) || perMin.Stricter(perSec) {
		t.Error("60/minute burst 60 lets more through than 1/second burst 1")
	}
	if !perMin.Stricter(RateLimit{}) || (RateLimit{}).Stricter(perMin) {
		t.Error("no limit is the least strict")
	}
	if got := (RateLimit{Rate: 10, Per: time.Minute, Burst: 5}).Refill(); got != 30*time.Second {
		t.Errorf("refill of 10/minute burst 5: %s", got)
	}
}

func TestAllowLimit(t *testing.T) {
	cfg, err := Parse([]byte("allow:\n  - container: web\n    ports: [8080]\n    limit: 10/minute,burst=5\n"))
	if err != nil || cfg.Allow[0].Limit != (RateLimit{Rate: 10, Per: time.Minute, Burst: 5}) {
		t.Fatalf("%+v %v", cfg.Allow, err)
	}
	_, err = Parse([]byte("allow:\n  - container: web\n    ports: [8080]\n    limit: 10/fortnight\n"))
	if err == nil || !strings.Contains(err.Error(), "limit") || !strings.Contains(err.Error(), "N/minute") {
		t.Errorf("bad limit: %v", err)
	}
}
