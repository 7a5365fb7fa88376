package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RateLimit is `ufw limit` for a published port: new connections per
// source address (per /64 for IPv6) beyond Rate per Per are refused,
// with Burst of them allowed at once. The zero value is no limit.
// Written N/second|minute|hour[,burst=B]; B defaults to N.
type RateLimit struct {
	Rate  uint32
	Per   time.Duration // time.Second, time.Minute or time.Hour
	Burst uint32
}

// MaxRate bounds N and B: the kernel's hashlimit refuses a burst above
// 10,000, and a rate of more than 10,000 new connections a second per
// source limits nothing a user means to limit.
const MaxRate = 10000

var limitUnits = map[string]time.Duration{"second": time.Second, "minute": time.Minute, "hour": time.Hour}

// ParseRateLimit reads N/second|minute|hour[,burst=B].
func ParseRateLimit(s string) (RateLimit, error) {
	const want = "want N/second, N/minute or N/hour, optionally followed by ,burst=B (as in 10/minute,burst=5)"
	rate, burst, hasBurst := strings.Cut(strings.TrimSpace(s), ",")
	n, unit, ok := strings.Cut(rate, "/")
	per, known := limitUnits[strings.TrimSpace(unit)]
	if !ok || !known {
		return RateLimit{}, fmt.Errorf("rate limit %q: %s", s, want)
	}
	l := RateLimit{Per: per}
	var err error
	if l.Rate, err = limitNumber(n); err != nil {
		return RateLimit{}, fmt.Errorf("rate limit %q: the rate %w; %s", s, err, want)
	}
	l.Burst = l.Rate
	if hasBurst {
		k, v, ok := strings.Cut(strings.TrimSpace(burst), "=")
		if !ok || strings.TrimSpace(k) != "burst" {
			return RateLimit{}, fmt.Errorf("rate limit %q: %s", s, want)
		}
		if l.Burst, err = limitNumber(v); err != nil {
			return RateLimit{}, fmt.Errorf("rate limit %q: the burst %w", s, err)
		}
	}
	return l, nil
}

func limitNumber(s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil || n == 0 || n > MaxRate {
		return 0, fmt.Errorf("must be a whole number from 1 to %d", MaxRate)
	}
	return uint32(n), nil
}

// IsZero reports whether there is no limit.
func (l RateLimit) IsZero() bool { return l.Rate == 0 }

// Unit is the period's name: second, minute or hour.
func (l RateLimit) Unit() string {
	for name, d := range limitUnits {
		if d == l.Per {
			return name
		}
	}
	return ""
}

// String writes the limit as it is parsed.
func (l RateLimit) String() string {
	if l.IsZero() {
		return ""
	}
	return fmt.Sprintf("%d/%s,burst=%d", l.Rate, l.Unit(), l.Burst)
}

// Stricter reports whether l lets fewer connections through than o: a
// lower rate, or the same rate with a lower burst. No limit is the least
// strict.
func (l RateLimit) Stricter(o RateLimit) bool {
	switch {
	case l.IsZero():
		return false
	case o.IsZero():
		return true
	}
	// Compare l.Rate/l.Per with o.Rate/o.Per without division.
	a, b := uint64(l.Rate)*uint64(o.Per/time.Second), uint64(o.Rate)*uint64(l.Per/time.Second)
	if a != b {
		return a < b
	}
	return l.Burst < o.Burst
}

// Refill is how long a source's allowance takes to refill from empty:
// after that long without a new connection the source is as good as
// new, so the kernel may forget it.
func (l RateLimit) Refill() time.Duration {
	if l.IsZero() {
		return 0
	}
	return time.Duration(l.Burst) * l.Per / time.Duration(l.Rate)
}
