//go:build wasip1

// Command sender is the function of the emails queue (subject email.send):
// it "sends" {"to", "template"} and reports it by publishing
// {"id", "to", "from", "template"} to email.sent, "from" being the SENDER
// variable of the function's env in runtime.hcl.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/sluice-run/sluice/sdk"
)

type request struct {
	ID       string `json:"id"` // the id of the event that asked for the email, if any
	To       string `json:"to"`
	Template string `json:"template"`
}

type sent struct {
	ID        string `json:"id"`
	To        string `json:"to"`
	From      string `json:"from"`
	Template  string `json:"template,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

func init() {
	sluice.Handle(func(e sluice.Event) ([]byte, error) {
		var r request
		if err := json.Unmarshal(e.Data, &r); err != nil {
			return nil, sluice.Permanent(fmt.Errorf("invalid email request: %v", err))
		}
		if r.To == "" {
			return nil, sluice.Permanent(errors.New("invalid email request: missing to"))
		}
		from := os.Getenv("SENDER")
		sluice.Logf(sluice.Info, "sending %q email from %s to %s", r.Template, from, r.To)
		msg, err := json.Marshal(sent{ID: e.ID, To: r.To, From: from, Template: r.Template, RequestID: r.ID})
		if err != nil {
			return nil, err
		}
		if err := sluice.Publish("email.sent", msg); err != nil {
			return nil, fmt.Errorf("report sent email: %w", err)
		}
		return []byte("sent to " + r.To), nil
	})
}

func main() {}
