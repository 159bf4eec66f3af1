//go:build wasip1

// Command panic panics in its handler; the SDK reports a failure with the
// reason "panic: boom".
package main

import "github.com/sluice-run/sluice/sdk"

func init() {
	sluice.Handle(func(sluice.Event) ([]byte, error) { panic("boom") })
}

func main() {}
