package runtime

import (
	"encoding/json"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions"
)

// LogSubjectPrefix is where every node publishes its guests' log lines, as
// core NATS messages (not stored): `sluice logs` subscribes below it. Only
// admin users may subscribe (publishPermissions lets the publish role
// subscribe to its own inbox only).
const LogSubjectPrefix = "sluice.logs"

// maxLogBuffered is how many bytes the runtime's connection may hold
// unsent before guest log lines are dropped rather than queued: a slow or
// cut link to the server must not hold back invocations or grow memory.
const maxLogBuffered = 1 << 20

// LogRecord is one guest log line as published on LogSubject and printed
// by `sluice logs --json`.
type LogRecord struct {
	Time     time.Time `json:"time"`
	Node     string    `json:"node"`
	Function string    `json:"function"`
	Binding  string    `json:"binding"`
	Event    string    `json:"event"`
	Attempt  int       `json:"attempt"`
	Level    string    `json:"level"`
	Line     string    `json:"line"`
}

// LogSubject is the subject of the log lines of function when it runs for
// binding: a topic subscriber's "TOPIC/SUB" becomes two tokens, as in
// replay subjects.
func LogSubject(function, binding string) string {
	return LogSubjectPrefix + "." + function + "." + strings.ReplaceAll(binding, "/", ".")
}

// logPublisher sends guest log lines to LogSubject without waiting: a core
// publish only appends to the connection's buffer, and a line is dropped
// (and counted) when that buffer is already large or the subject is not
// one the runtime may send to.
type logPublisher struct {
	nc      *nats.Conn
	node    string
	dropped func(function string)
}

var _ functions.LogSink = (*logPublisher)(nil)

func (p *logPublisher) GuestLog(l functions.LogLine) {
	subject := LogSubject(l.Function, l.Binding)
	if config.CheckSendSubject(subject) != nil {
		p.dropped(l.Function)
		return
	}
	if buffered, err := p.nc.Buffered(); err != nil || buffered > maxLogBuffered {
		p.dropped(l.Function)
		return
	}
	body, err := json.Marshal(LogRecord{
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
