// Package version is the build's version, stamped by the release build
// (go run ./internal/release) from `git describe --tags --always --dirty`.
package version

import (
	"fmt"
	"regexp"
	goruntime "runtime"
	"runtime/debug"
	"strings"
)

// Version is set at link time with
// -ldflags "-X github.com/sluice-run/sluice/internal/version.Version=…".
var Version = ""

// String is the stamped version; an unstamped build (go build, go run, a
// test) reports the VCS revision Go recorded, or "dev".
func String() string {
	if Version != "" {
		return Version
	}
	if info, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "-dirty"
				}
			}
		}
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if rev != "" {
			return "dev-" + rev + dirty
		}
	}
	return "dev"
}

// SemVer is String as a semantic version, the form NATS micro services
// require: a leading "v" is dropped, and a version that is not one (a bare
// commit hash) becomes 0.0.0 with it as build metadata.
func SemVer() string {
	v := strings.TrimPrefix(String(), "v")
	if semVer.MatchString(v) {
		return v
	}
	meta := strings.Trim(invalidMeta.ReplaceAllString(v, "-"), "-.")
	if meta == "" {
		return "0.0.0"
	}
	return "0.0.0+" + meta
}

// semVer is the expression semver.org suggests, which micro checks.
var (
	semVer      = regexp.MustCompile(`^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$`)
	invalidMeta = regexp.MustCompile(`[^0-9A-Za-z-]+`)
)

// Line is what `sluice version` prints: the version, the Go release that
// built it, and the platform.
func Line() string {
	return fmt.Sprintf("sluice %s (%s, %s/%s)", String(), goruntime.Version(), goruntime.GOOS, goruntime.GOARCH)
}
