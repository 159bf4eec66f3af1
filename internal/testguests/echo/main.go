//go:build wasip1

// Command echo returns the payload as its result and, when the event has a
// "Reply-Effect" header, also publishes the payload to the subject it names.
package main

import "github.com/sluice-run/sluice/sdk"

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		if subject := e.Header("Reply-Effect"); subject != "" {
			if err := sluice.Publish(subject, e.Data); err != nil {
				return nil, err
			}
		}
		return e.Data, nil
	})
}

func main() {}
