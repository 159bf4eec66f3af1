package runtime

import (
	"encoding/json"
	"log/slog"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
)

// maxLogBuffered is how many bytes the runtime's connection may hold
// unsent before guest log lines are dropped rather than queued: a slow or
// cut link to the server must not hold back invocations or grow memory.
const maxLogBuffered = 1 << 20

// logPublisher sends guest log lines to client.LogSubject without
// waiting: a core publish only appends to the connection's buffer, and a
// line is dropped (and counted) when that buffer is already large or the
// subject is not one the runtime may send to. A line nobody follows is
// not sent at all, when that is known.
type logPublisher struct {
	nc      *nats.Conn
	node    string
	dropped func(function string)
	// interested reports whether any client subscribes to a subject; nil
	// when that is not known (an external NATS server), and then every
	// line is sent.
	interested func(subject string) bool
}

// subscriptionInterest answers logPublisher.interested from srv, the
// embedded server: its account's subscriptions include those of the other
// nodes of a cluster (routes register them), so a `sluice logs` on any
// node counts. Every client is in the global account (sluice configures
// users, not accounts).
func subscriptionInterest(srv *server.Server) func(subject string) bool {
	if srv == nil {
		return nil
	}
	return srv.GlobalAccount().SubscriptionInterest
}

var _ functions.LogSink = (*logPublisher)(nil)

func (p *logPublisher) GuestLog(l functions.LogLine) {
	subject := client.LogSubject(l.Function, l.Binding)
	if config.CheckSendSubject(subject) != nil {
		p.dropped(l.Function)
		return
	}
	if p.interested != nil && !p.interested(subject) {
		return
	}
	if buffered, err := p.nc.Buffered(); err != nil || buffered > maxLogBuffered {
		p.dropped(l.Function)
		return
	}
	body, err := json.Marshal(client.LogRecord{
		Time: l.Time, Node: p.node, Function: l.Function, Binding: l.Binding, Event: l.Event,
		Attempt: l.Attempt, Level: levelName(l.Level), Line: l.Line,
	})
	if err != nil || p.nc.Publish(subject, body) != nil {
		p.dropped(l.Function)
	}
}

func levelName(l slog.Level) string {
	return strings.ToLower(l.String())
}
