package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluice-run/sluice/client"
)

// A producer publishes an event with its own id, learns which bindings
// received it, and waits for each one's outcome.
func Example() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	c, err := client.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ev := client.Event{Subject: "email.send", ID: "order-42", Data: []byte(`{"to":"a@example.com"}`)}
	pub, outcomes, err := c.PublishWait(ctx, ev, nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("bindings:", pub.Bindings)
	for _, o := range outcomes {
		fmt.Println(o.Binding, o.State, string(o.Result))
	}
}
