//go:build wasip1

// Command noop succeeds with no result and does nothing else (benchmarks).
package main

import "github.com/sluice-run/sluice/sdk"

func init() {
	sluice.Handle(func(sluice.Event) ([]byte, error) { return nil, nil })
}

func main() {}
