//go:build wasip1

// Command once publishes its payload to the subject in the "Target" header
// only the first time it sees the event id (sluice.Seen, with the ttl in the
// "Ttl" header, default one hour), and returns "first" or "seen".
package main

import (
	"time"

	"github.com/sluice-run/sluice/sdk"
)

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		ttl := time.Hour
		if s := e.Header("Ttl"); s != "" {
			d, err := time.ParseDuration(s)
			if err != nil {
				return nil, sluice.Permanent(err)
			}
			ttl = d
		}
		dup, err := sluice.Seen(e.ID, ttl)
		if err != nil {
			return nil, err
		}
		if dup {
			return []byte("seen"), nil
		}
		if err := sluice.Publish(e.Header("Target"), e.Data); err != nil {
			return nil, err
		}
		return []byte("first"), nil
	})
}

func main() {}
