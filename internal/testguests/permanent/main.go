//go:build wasip1

// Command permanent always fails permanently with the reason "permanent".
package main

import (
	"errors"

	"github.com/sluice-run/sluice/sdk"
)

func init() {
	sluice.Handle(func(sluice.Event) ([]byte, error) {
		return nil, sluice.Permanent(errors.New("permanent"))
	})
}

func main() {}
