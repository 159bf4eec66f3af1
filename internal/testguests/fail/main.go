//go:build wasip1

// Command fail always fails (retryable) with the reason "fail".
package main

import (
	"errors"

	"github.com/sluice-run/sluice/sdk"
)

func init() {
	sluice.Handle(func(sluice.Event) ([]byte, error) { return nil, errors.New("fail") })
}

func main() {}
