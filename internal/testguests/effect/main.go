//go:build wasip1

// Command effect records that it handled an event: it publishes
// {"id": ID, "by": EFFECT_BY} to the subject in EFFECT_SUBJECT, where ID is
// the "id" field of the event's JSON payload (the event's id if it has
// none), and returns what it published. Several functions made of this one
// module, told apart by their environment, let a test count each binding's
// effects. An event whose payload has "fail": true fails (retryably) without
// an effect, so a test can make some events dead-letter.
package main

import (
	"encoding/json"
	"errors"
	"os"

	"github.com/sluice-run/sluice/sdk"
)

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		var in struct {
			ID   string `json:"id"`
			Fail bool   `json:"fail"`
		}
		if json.Unmarshal(e.Data, &in) != nil || in.ID == "" {
			in.ID = e.ID
		}
		if in.Fail {
			return nil, errors.New("the event asked to fail")
		}
		out, err := json.Marshal(map[string]string{"id": in.ID, "by": os.Getenv("EFFECT_BY")})
		if err != nil {
			return nil, sluice.Permanent(err)
		}
		if err := sluice.Publish(os.Getenv("EFFECT_SUBJECT"), out); err != nil {
			return nil, err
		}
		return out, nil
	})
}

func main() {}
