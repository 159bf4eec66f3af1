//go:build wasip1

// Command welcome_sms is a subscriber of the user_registered topic: it sends
// a welcome text to the signup's phone number (or, lacking one, its email) by
// publishing {"id", "to", "text": "Welcome!"} to sms.outbox.
package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sluice-run/sluice/sdk"
)

type signup struct {
	Email string `json:"email"`
	Phone string `json:"phone"`
}

type sms struct {
	ID   string `json:"id"`
	To   string `json:"to"`
	Text string `json:"text"`
}

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		var s signup
		if err := json.Unmarshal(e.Data, &s); err != nil {
			return nil, sluice.Permanent(fmt.Errorf("invalid signup event: %v", err))
		}
		to := s.Phone
		if to == "" {
			to = s.Email
		}
		if to == "" {
			return nil, sluice.Permanent(errors.New("invalid signup event: missing phone and email"))
		}
		msg, err := json.Marshal(sms{ID: e.ID, To: to, Text: "Welcome!"})
		if err != nil {
			return nil, err
		}
		if err := sluice.Publish("sms.outbox", msg); err != nil {
			return nil, fmt.Errorf("queue sms: %w", err)
		}
		return []byte("sms queued"), nil
	})
}

func main() {}
