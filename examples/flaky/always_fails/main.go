//go:build wasip1

// Command always_fails never succeeds: every attempt fails (and is retried)
// until the event is dead-lettered; an event {"permanent": true} fails
// permanently and is dead-lettered at once.
package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sluice-run/sluice/sdk"
)

type payment struct {
	Permanent bool `json:"permanent"`
}

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		var p payment
		_ = json.Unmarshal(e.Data, &p) // anything that is not {"permanent": true} fails normally
		if p.Permanent {
			return nil, sluice.Permanent(errors.New("card is invalid"))
		}
		return nil, fmt.Errorf("payment provider rejected the card (attempt %d)", e.Attempt)
	})
}

func main() {}
