// Package rustsdk carries the Rust SDK (the sluice crate, lib.rs) so that
// sluice can build Rust functions, and scaffold them, without the
// repository at hand.
package rustsdk

import _ "embed"

// Lib is the crate's lib.rs.
//
//go:embed lib.rs
var Lib []byte

// CargoToml is the crate's manifest.
//
//go:embed Cargo.toml
var CargoToml []byte
