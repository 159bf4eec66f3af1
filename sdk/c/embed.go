// Package csdk carries the C SDK (sluice.h) so that sluice can build C
// functions, and scaffold them, without the repository at hand.
package csdk

import _ "embed"

// Header is sluice.h.
//
//go:embed sluice.h
var Header []byte
