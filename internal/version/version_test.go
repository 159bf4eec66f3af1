package version

import "testing"

func TestSemVerIsAcceptedByMicro(t *testing.T) {
	cases := map[string]string{
		"v1.2.3":              "1.2.3",
		"v1.2.3-4-gabcdef0":   "1.2.3-4-gabcdef0",
		"a05074d":             "0.0.0+a05074d",
		"a05074d-dirty":       "0.0.0+a05074d-dirty",
		"v1.2-rc.1_x":         "0.0.0+1-2-rc-1-x",
		"0123456":             "0.0.0+0123456",
		"v1.2.3-4-gabc-dirty": "1.2.3-4-gabc-dirty",
	}
	defer func(v string) { Version = v }(Version)
	for in, want := range cases {
		Version = in
		got := SemVer()
		if got != want {
			t.Errorf("SemVer() of %q = %q, want %q", in, got, want)
		}
		if !semVer.MatchString(got) {
			t.Errorf("SemVer() of %q = %q is not a semantic version", in, got)
		}
	}
}
