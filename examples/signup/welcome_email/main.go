//go:build wasip1

// Command welcome_email is a subscriber of the user_registered topic: for each
// signup {"email": "..."} it queues a welcome email by publishing
// {"id", "to", "template": "welcome"} to email.send.
package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sluice-run/sluice/sdk"
)

type signup struct {
	Email string `json:"email"`
}

type emailRequest struct {
	ID       string `json:"id"`
	To       string `json:"to"`
	Template string `json:"template"`
}

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		var s signup
		if err := json.Unmarshal(e.Data, &s); err != nil {
			return nil, sluice.Permanent(fmt.Errorf("invalid signup event: %v", err))
		}
		if s.Email == "" {
			return nil, sluice.Permanent(errors.New("invalid signup event: missing email"))
		}
		msg, err := json.Marshal(emailRequest{ID: e.ID, To: s.Email, Template: "welcome"})
		if err != nil {
			return nil, err
		}
		if err := sluice.Publish("email.send", msg); err != nil {
			return nil, fmt.Errorf("queue welcome email: %w", err)
		}
		return []byte("queued welcome email for " + s.Email), nil
	})
}

func main() {}
