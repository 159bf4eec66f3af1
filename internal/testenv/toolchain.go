package testenv

import (
	"os"
	"testing"

	"github.com/sluice-run/sluice/internal/guestbuild"
)

// RequireToolchainEnv, when set (CI sets it), turns a missing guest
// toolchain into a test failure instead of a skip.
const RequireToolchainEnv = "SLUICE_REQUIRE_TOOLCHAINS"

// RequireToolchain skips the test when the compiler of lang is not
// installed, or fails it when RequireToolchainEnv is set.
func RequireToolchain(t testing.TB, lang guestbuild.Language) {
	t.Helper()
	if err := guestbuild.Toolchain(lang); err != nil {
		if os.Getenv(RequireToolchainEnv) != "" {
			t.Fatalf("%s toolchain: %v", lang, err)
		}
		t.Skipf("%s toolchain: %v", lang, err)
	}
}
