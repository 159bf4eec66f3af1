// Package assdk carries the AssemblyScript SDK so that sluice can build
// AssemblyScript functions, and scaffold them, without the repository at
// hand.
package assdk

import _ "embed"

// Index is the SDK's module (imported as "sluice").
//
//go:embed index.ts
var Index []byte

// Globals replaces the functions AssemblyScript imports from "env" (abort,
// trace, seed); asc takes it with --lib and --use.
//
//go:embed globals/sluice_globals.ts
var Globals []byte

// PackageJSON is the SDK's package.json.
//
//go:embed package.json
var PackageJSON []byte

// Flags are the asc flags that make a sluice module, given the directories
// holding the SDK as a package (pkgs/sluice/index.ts) and the globals.
func Flags(pkgs, globals string) []string {
	return []string{"--exportStart", "_initialize", "--path", pkgs, "--lib", globals,
		"--use", "abort=sluice_abort", "--use", "trace=sluice_trace", "--use", "seed=sluice_seed"}
}
