package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// sizeUnits maps a size suffix to its multiplier. Decimal units are powers
// of 1000, binary units powers of 1024.
var sizeUnits = map[string]int64{
	"":    1,
	"B":   1,
	"KB":  1000,
	"MB":  1000 * 1000,
	"GB":  1000 * 1000 * 1000,
	"TB":  1000 * 1000 * 1000 * 1000,
	"KiB": 1 << 10,
	"MiB": 1 << 20,
	"GiB": 1 << 30,
	"TiB": 1 << 40,
}

// sizeHelp says what ParseSize accepts; diagnostics repeat it.
const sizeHelp = `a whole number of bytes with an optional unit: B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024), such as "64MiB"`

// ParseSize parses a byte size such as "64MiB", "1MB", "512B" or "4096".
// Units are B, KB, MB, GB, TB (powers of 1000) and KiB, MiB, GiB, TiB
// (powers of 1024); a plain integer is a number of bytes. The number must be
// a non-negative integer, and the result must fit in an int64.
func ParseSize(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty size")
	}
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	num, unit := s[:i], s[i:]
	if num == "" {
		if strings.HasPrefix(s, "-") {
			return 0, fmt.Errorf("size %q is negative", s)
		}
		return 0, fmt.Errorf("size %q does not start with a number", s)
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		if strings.HasPrefix(unit, ".") {
			return 0, fmt.Errorf("size %q is not a whole number; use a smaller unit", s)
		}
		return 0, fmt.Errorf("size %q has unknown unit %q", s, unit)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}

// rateHelp says what ParseRate accepts; diagnostics repeat it.
const rateHelp = `a number of events, a slash and a period, such as "200/s", "10/m", "5/h", "2000/1s" or "1/500ms"`

// ParseRate parses a rate such as "200/s", "10/m", "5/h", "2000/1s" or
// "1/500ms": a positive number of events (decimals allowed), a slash, and a
// positive period, either a bare unit (ns, us, ms, s, m, h: one of it) or a
// Go duration.
func ParseRate(s string) (Rate, error) {
	events, per, ok := strings.Cut(s, "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q has no \"/\"", s)
	}
	if !isDecimal(events) {
		if strings.HasPrefix(events, "-") {
			return Rate{}, fmt.Errorf("rate %q: the number of events must be greater than zero", s)
		}
		return Rate{}, fmt.Errorf("rate %q: %q is not a number of events", s, events)
	}
	n, err := strconv.ParseFloat(events, 64)
	if err != nil || math.IsInf(n, 0) || math.IsNaN(n) {
		return Rate{}, fmt.Errorf("rate %q: %q is not a number of events", s, events)
	}
	if n <= 0 {
		return Rate{}, fmt.Errorf("rate %q: the number of events must be greater than zero", s)
	}
	period := per
	if per != "" && (per[0] < '0' || per[0] > '9') && per[0] != '.' {
		period = "1" + per // a bare unit: "s" is "1s"
	}
	d, err := time.ParseDuration(period)
	if err != nil {
		return Rate{}, fmt.Errorf("rate %q: %q is not a period", s, per)
	}
	if d <= 0 {
		return Rate{}, fmt.Errorf("rate %q: the period must be greater than zero", s)
	}
	return Rate{Events: n, Per: d}, nil
}

// isDecimal reports whether s is digits with at most one '.', and at least
// one digit: what ParseFloat accepts minus signs, exponents, hex, Inf and NaN.
func isDecimal(s string) bool {
	digits, dots := 0, 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			dots++
		default:
			return false
		}
	}
	return digits > 0 && dots <= 1
}
