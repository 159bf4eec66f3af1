package chaos

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var upstream = flag.Bool("chaos.upstream", false, "run the reproductions of nats-server behaviours sluice works around (slow: they wait for pull requests to expire)")

// TestUpstreamResumeWakesNoWaitingPull reproduces, with nats-server and
// nats.go alone, why a consumer could stop pulling for up to a pull
// request's expiry after `sluice pause` and `sluice resume`:
//
//   - A pull request that reached the consumer while it was paused is
//     served when the pause ends only if it ends by the timer nats-server
//     (2.15.2) arms for a deadline in the future
//     (consumer.updatePauseState). ResumeConsumer clears the deadline and
//     arms nothing, so the backlog waits until the client's request misses
//     its heartbeat or expires (half of nats.go's 30 s default expiry, and
//     half of this test's).
//   - A pause whose deadline is near ("now + 100 ms", sluice's earlier
//     workaround) has the same fate whenever the update reaches the
//     consumer's leader after that deadline: a loaded machine or a
//     cluster's replication was enough.
//   - So a short expiry on the client's pull requests bounds the stall,
//     whatever its cause.
//
// It is skipped unless -chaos.upstream is given: each stalled case waits
// for a pull request's expiry.
func TestUpstreamResumeWakesNoWaitingPull(t *testing.T) {
	if !*upstream {
		t.Skip("a reproduction of upstream behaviour; run with -chaos.upstream")
	}
	const expiry = 6 * time.Second
	cases := []struct {
		name   string
		resume func(ctx context.Context, js jetstream.JetStream, stream, consumer string) error
		wakes  bool // the waiting pull request is served before it expires
	}{
		{"ResumeConsumer", func(ctx context.Context, js jetstream.JetStream, s, c string) error {
			_, err := js.ResumeConsumer(ctx, s, c)
			return err
		}, false},
		{"pause until a deadline that passed before it was applied", func(ctx context.Context, js jetstream.JetStream, s, c string) error {
			_, err := js.PauseConsumer(ctx, s, c, time.Now().Add(-time.Millisecond))
			return err
		}, false},
		{"pause until a deadline still ahead when applied", func(ctx context.Context, js jetstream.JetStream, s, c string) error {
			_, err := js.PauseConsumer(ctx, s, c, time.Now().Add(300*time.Millisecond))
			return err
		}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			js := bareJetStream(t)
			ctx := context.Background()
			if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}}); err != nil {
				t.Fatal(err)
			}
			cons, err := js.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "C", AckPolicy: jetstream.AckExplicitPolicy})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.PauseConsumer(ctx, "S", "C", time.Now().Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			it, err := cons.Messages(jetstream.PullExpiry(expiry))
			if err != nil {
				t.Fatal(err)
			}
			defer it.Stop()
			got := make(chan time.Time, 1)
			go func() {
				if m, err := it.Next(); err == nil {
					_ = m.Ack()
					got <- time.Now()
				}
			}()
			// The iterator's pull request waits at the server; the message
			// comes while the consumer is paused.
			waitFor(t, 5*time.Second, "the pull request to wait at the server", func() bool {
				info, err := cons.Info(ctx)
				return err == nil && info.NumWaiting > 0
			})
			if _, err := js.Publish(ctx, "s", []byte("x")); err != nil {
				t.Fatal(err)
			}
			resumed := time.Now()
			if err := tc.resume(ctx, js, "S", "C"); err != nil {
				t.Fatal(err)
			}
			select {
			case at := <-got:
				took := at.Sub(resumed)
				woke := took < expiry/4
				t.Logf("%s: delivered %s after the resume", tc.name, took.Round(time.Millisecond))
				if woke != tc.wakes {
					t.Errorf("%s: delivered after %s; want the waiting pull request served before it expires: %v", tc.name, took, tc.wakes)
				}
			case <-time.After(3 * expiry):
				t.Fatalf("%s: nothing delivered %s after the resume, not even after the pull request expired", tc.name, 3*expiry)
			}
		})
	}
}

// bareJetStream starts an embedded nats-server with JetStream, nothing of
// sluice, and connects to it.
func bareJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		JetStreamMaxMemory: 64 << 20, JetStreamMaxStore: 1 << 30, NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// waitFor polls cond until it holds, or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
