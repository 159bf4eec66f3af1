package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// LogSubjectPrefix is where every node publishes its guests' log lines, as
// core NATS messages (not stored). Only admin users may subscribe.
const LogSubjectPrefix = "sluice.logs"

// LogRecord is one log line a guest wrote during an invocation, as
// published below LogSubjectPrefix.
type LogRecord struct {
	Time     time.Time `json:"time"`
	Node     string    `json:"node"`
	Function string    `json:"function"`
	Binding  string    `json:"binding"`
	Event    string    `json:"event"`
	Attempt  int       `json:"attempt"`
	Level    string    `json:"level"` // debug, info, warn or error
	Line     string    `json:"line"`
}

// LogSubject is the subject of the log lines of function when it runs for
// binding: a topic subscriber's "TOPIC/SUB" becomes two tokens, as in
// ReplaySubject.
func LogSubject(function, binding string) string {
	return LogSubjectPrefix + "." + function + "." + strings.ReplaceAll(binding, "/", ".")
}

// LogFilter selects log lines; a zero field selects all.
type LogFilter struct {
	// Name is a function or a binding.
	Name string
	// Event is an event id.
	Event string
}

func (f LogFilter) match(r LogRecord) bool {
	return (f.Name == "" || r.Function == f.Name || r.Binding == f.Name) && (f.Event == "" || r.Event == f.Event)
}

// LogStream is a subscription to the log lines of every node.
type LogStream struct {
	sub    *nats.Subscription
	filter LogFilter
}

// FollowLogs subscribes to the log lines filter selects, from every node;
// it returns once the server has accepted the subscription, or refused it
// (nats.ErrPermissionViolation: not an admin user). Only lines published
// from then on are received: none are stored. The caller closes the
// stream.
func (c *Client) FollowLogs(filter LogFilter) (*LogStream, error) {
	sub, err := c.nc.SubscribeSync(LogSubjectPrefix + ".>")
	if err != nil {
		return nil, fmt.Errorf("subscribe to the log lines: %w", err)
	}
	// The server refuses a subscription asynchronously: its answer
	// arrives before the flush's.
	if err := c.nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to the log lines: %w", err)
	}
	if err := c.nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to the log lines: %w", err)
	}
	return &LogStream{sub: sub, filter: filter}, nil
}

// Next waits for the next selected line; it returns ctx's error when ctx
// ends first.
func (s *LogStream) Next(ctx context.Context) (LogRecord, error) {
	for {
		m, err := s.sub.NextMsgWithContext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return LogRecord{}, ctx.Err()
			}
			return LogRecord{}, fmt.Errorf("log stream: %w", err)
		}
		var r LogRecord
		if json.Unmarshal(m.Data, &r) == nil && s.filter.match(r) {
			return r, nil
		}
	}
}

// Close ends the subscription.
func (s *LogStream) Close() error { return s.sub.Unsubscribe() }

// Follow calls each with every selected line until ctx ends (then it
// returns nil), or each or the stream fails.
func (s *LogStream) Follow(ctx context.Context, each func(LogRecord) error) error {
	for {
		r, err := s.Next(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = each(r)
		}
		if err != nil {
			return err
		}
	}
}
