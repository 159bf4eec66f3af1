//go:build wasip1

// Command flaky fails its first two attempts at every event, as if an
// upstream service were briefly down, and succeeds on the third, publishing
// {"id", "attempt"} to flaky.done.
package main

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/sluice-run/sluice/sdk"
)

const succeedAt = 3

type done struct {
	ID      string `json:"id"`
	Attempt int    `json:"attempt"`
}

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		if e.Attempt < succeedAt {
			return nil, fmt.Errorf("upstream unavailable (attempt %d)", e.Attempt)
		}
		msg, err := json.Marshal(done{ID: e.ID, Attempt: e.Attempt})
		if err != nil {
			return nil, err
		}
		if err := sluice.Publish("flaky.done", msg); err != nil {
			return nil, fmt.Errorf("report done: %w", err)
		}
		return []byte("ok after " + strconv.Itoa(e.Attempt) + " attempts"), nil
	})
}

func main() {}
