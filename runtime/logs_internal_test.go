package runtime

import (
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/functions"
)

func startBareServer(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// TestLogLinesDropWhenTheConnectionIsBackedUp: a guest's line reaches
// sluice.logs.<function>.<binding tokens> as a LogRecord; while the
// connection is down its unsent buffer grows to about 1 MiB and no
// further, each line beyond dropped and counted, and once it is closed
// every line is dropped: GuestLog never waits for the server.
func TestLogLinesDropWhenTheConnectionIsBackedUp(t *testing.T) {
	s := startBareServer(t)
	reader, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	sub, err := reader.SubscribeSync(client.LogSubjectPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	if err := reader.Flush(); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectBufSize(16<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var dropped atomic.Int64
	p := &logPublisher{nc: nc, node: "n1", dropped: func(fn string) {
		if fn != "fn" {
			t.Errorf("dropped a line of %q", fn)
		}
		dropped.Add(1)
	}}
	line := functions.LogLine{Time: time.Now(), Function: "fn", Binding: "signup/crm", Event: "e-1", Attempt: 2, Level: slog.LevelWarn, Line: "hello"}

	p.GuestLog(line)
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r client.LogRecord
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	if m.Subject != "sluice.logs.fn.signup.crm" || r.Node != "n1" || r.Function != "fn" || r.Binding != "signup/crm" ||
		r.Event != "e-1" || r.Attempt != 2 || r.Level != "warn" || r.Line != "hello" {
		t.Fatalf("received %s %+v", m.Subject, r)
	}

	s.Shutdown()
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsReconnecting() {
		if time.Now().After(deadline) {
			t.Fatal("the connection did not notice the server going away")
		}
		time.Sleep(10 * time.Millisecond)
	}
	line.Line = strings.Repeat("x", 64<<10)
	const lines = 40 // 2.5 MiB
	for range lines {
		p.GuestLog(line)
	}
	buffered, err := nc.Buffered()
	if err != nil {
		t.Fatal(err)
	}
	if buffered > maxLogBuffered+(80<<10) {
		t.Errorf("%d bytes buffered, above the bound of %d and one line", buffered, maxLogBuffered)
	}
	if d := dropped.Load(); d == 0 || d >= lines {
		t.Errorf("%d of %d lines dropped while disconnected, want those beyond 1 MiB", d, lines)
	}

	nc.Close()
	before := dropped.Load()
	p.GuestLog(line)
	if dropped.Load() != before+1 {
		t.Error("a line logged on a closed connection was not counted as dropped")
	}
}
