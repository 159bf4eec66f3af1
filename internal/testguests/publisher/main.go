//go:build wasip1

// Command publisher publishes the payload to the subject named by the
// "Target" header and returns "published to SUBJECT". A failed publish fails
// the invocation with the error's text as reason (`publish "x": denied`, ...).
package main

import (
	"errors"

	"github.com/sluice-run/sluice/sdk"
)

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		target := e.Header("Target")
		if target == "" {
			return nil, sluice.Permanent(errors.New("missing Target header"))
		}
		if err := sluice.Publish(target, e.Data); err != nil {
			return nil, err
		}
		return []byte("published to " + target), nil
	})
}

func main() {}
