//go:build wasip1

// Command stall stalls the first run of each event: the first time it sees
// an event id (sluice.Seen) it publishes the payload to the subject in the
// "Started" header, then sleeps for the duration in the "Stall" header
// before succeeding. Later runs of the event succeed at once. A test kills
// the runtime during the stall to interrupt an invocation.
package main

import (
	"time"

	"github.com/sluice-run/sluice/sdk"
)

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		dup, err := sluice.Seen("stall-"+e.ID, time.Hour)
		if err != nil {
			return nil, err
		}
		if dup {
			return []byte("ok"), nil
		}
		if err := sluice.Publish(e.Header("Started"), e.Data); err != nil {
			return nil, err
		}
		d, err := time.ParseDuration(e.Header("Stall"))
		if err != nil {
			return nil, sluice.Permanent(err)
		}
		time.Sleep(d)
		return []byte("stalled"), nil
	})
}

func main() {}
