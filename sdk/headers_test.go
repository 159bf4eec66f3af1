package sluice

import (
	"reflect"
	"testing"
)

func TestParseHeaders(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string][]string
	}{
		{"Target: a.b\n", map[string][]string{"Target": {"a.b"}}},
		{"A: 1\nB: x: y\nA: 2\n", map[string][]string{"A": {"1", "2"}, "B": {"x: y"}}},
		{"A:1\r\nEmpty: \nno colon\n: nameless\nLast: z", map[string][]string{"A": {"1"}, "Empty": {""}, "Last": {"z"}}},
		{"A:  two spaces\n", map[string][]string{"A": {" two spaces"}}},
		{"\n\n", map[string][]string{}},
	} {
		if got := parseHeaders(tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseHeaders(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
