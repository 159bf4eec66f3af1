//go:build wasip1

// Command profile_store is a subscriber of the user_registered topic: it
// builds the user's profile from the signup and records it by publishing
// {"id", "email", ...} to profile.stored. Its result is the stored profile.
package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/sluice-run/sluice/sdk"
)

type signup struct {
	Email string `json:"email"`
	Name  string `json:"name"`
	Phone string `json:"phone"`
}

type profile struct {
	ID    string `json:"id"` // the signup event's id
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
	Phone string `json:"phone,omitempty"`
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
		p, err := json.Marshal(profile{ID: e.ID, Email: s.Email, Name: s.Name, Phone: s.Phone})
		if err != nil {
			return nil, err
		}
		if err := sluice.Publish("profile.stored", p); err != nil {
			return nil, fmt.Errorf("store profile: %w", err)
		}
		return p, nil
	})
}

func main() {}
