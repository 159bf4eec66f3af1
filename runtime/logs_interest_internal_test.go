package runtime

import (
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/functions"
)

// TestLogLinesAreSentOnlyWhileFollowed: with the embedded server's
// interest, a guest's log line is not sent while no one subscribes to its
// subject, is sent once a follower subscribes on another node of the
// cluster (interest arrives over the route), and is no longer sent after
// the follower leaves. None of the unsent lines counts as dropped.
func TestLogLinesAreSentOnlyWhileFollowed(t *testing.T) {
	a, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Cluster: server.ClusterOpts{Name: "logs", Host: "127.0.0.1", Port: -1}})
	if err != nil {
		t.Fatal(err)
	}
	a.Start()
	t.Cleanup(a.Shutdown)
	if !a.ReadyForConnections(10 * time.Second) {
		t.Fatal("server a not ready")
	}
	routes := server.RoutesFromStr("nats://" + a.ClusterAddr().String())
	b, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		Cluster: server.ClusterOpts{Name: "logs", Host: "127.0.0.1", Port: -1}, Routes: routes})
	if err != nil {
		t.Fatal(err)
	}
	b.Start()
	t.Cleanup(b.Shutdown)
	if !b.ReadyForConnections(10 * time.Second) {
		t.Fatal("server b not ready")
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("no %s within 10s", what)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("route between the servers", func() bool { return a.NumRoutes() > 0 && b.NumRoutes() > 0 })

	nc, err := nats.Connect(a.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p := &logPublisher{nc: nc, node: "a", interested: subscriptionInterest(a), dropped: func(fn string) {
		t.Errorf("a line of %s counted as dropped", fn)
	}}
	line := functions.LogLine{Time: time.Now(), Function: "fn", Binding: "q", Event: "e-1", Attempt: 1, Level: slog.LevelInfo, Line: "hello"}
	sent := func() uint64 {
		t.Helper()
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		return nc.Stats().OutMsgs
	}

	p.GuestLog(line)
	if n := sent(); n != 0 {
		t.Fatalf("%d messages sent with no follower, want 0", n)
	}

	follower, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer follower.Close()
	sub, err := follower.SubscribeSync(client.LogSubjectPrefix + ".fn.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := follower.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor("interest of the follower on server a", func() bool { return a.GlobalAccount().SubscriptionInterest("sluice.logs.fn.q") })
	p.GuestLog(line)
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("the followed line did not arrive: %v", err)
	}
	if m.Subject != "sluice.logs.fn.q" {
		t.Errorf("line on %s, want sluice.logs.fn.q", m.Subject)
	}
	before := sent()

	if err := sub.Unsubscribe(); err != nil {
		t.Fatal(err)
	}
	if err := follower.Flush(); err != nil {
		t.Fatal(err)
	}
	waitFor("the follower's interest to leave server a", func() bool { return !a.GlobalAccount().SubscriptionInterest("sluice.logs.fn.q") })
	p.GuestLog(line)
	if n := sent(); n != before {
		t.Errorf("%d messages sent after the follower left, want %d", n, before)
	}
}
