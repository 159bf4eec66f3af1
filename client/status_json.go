package client

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// statusFields is Status without its JSON methods.
type statusFields Status

// MarshalJSON writes Result as text when it is UTF-8, else as base64 with
// "result_encoding": "base64": the one encoding of a status, in the KV
// bucket, a Sluice-Reply, the status API and the CLI's --json alike.
func (s Status) MarshalJSON() ([]byte, error) {
	return s.AppendJSON(nil)
}

// AppendJSON appends what MarshalJSON writes to dst. The runtime encodes a
// status per event: this writes the fields directly, with the bytes
// encoding/json would produce (field order, omitempty, escaping), at a
// fraction of the reflection's cost.
func (s Status) AppendJSON(dst []byte) ([]byte, error) {
	var err error
	b := append(dst, `{"id":`...)
	b = appendString(b, s.ID)
	b = append(b, `,"binding":`...)
	b = appendString(b, s.Binding)
	b = append(b, `,"function":`...)
	b = appendString(b, s.Function)
	if s.Version != "" {
		b = append(b, `,"version":`...)
		b = appendString(b, s.Version)
	}
	b = append(b, `,"state":`...)
	b = appendString(b, s.State)
	b = append(b, `,"attempts":`...)
	b = strconv.AppendInt(b, int64(s.Attempts), 10)
	b = append(b, `,"max_attempts":`...)
	b = strconv.AppendInt(b, int64(s.MaxAttempts), 10)
	if s.Error != "" {
		b = append(b, `,"error":`...)
		b = appendString(b, s.Error)
	}
	if s.ErrorKind != "" {
		b = append(b, `,"error_kind":`...)
		b = appendString(b, s.ErrorKind)
	}
	if s.NextTryAt != nil {
		b = append(b, `,"next_try_at":`...)
		if b, err = appendTime(b, *s.NextTryAt); err != nil {
			return nil, err
		}
	}
	if s.FirstFailAt != nil {
		b = append(b, `,"first_failure_at":`...)
		if b, err = appendTime(b, *s.FirstFailAt); err != nil {
			return nil, err
		}
	}
	b = append(b, `,"subject":`...)
	b = appendString(b, s.Subject)
	b = append(b, `,"stream":`...)
	b = appendString(b, s.Stream)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, s.Sequence, 10)
	if s.DeadLetter != "" {
		b = append(b, `,"dead_letter":`...)
		b = appendString(b, s.DeadLetter)
	}
	if s.Round != 0 {
		b = append(b, `,"round":`...)
		b = strconv.AppendInt(b, s.Round, 10)
	}
	if s.Interrupted != 0 {
		b = append(b, `,"interrupted":`...)
		b = strconv.AppendInt(b, int64(s.Interrupted), 10)
	}
	if len(s.History) > 0 {
		b = append(b, `,"history":[`...)
		for i, a := range s.History {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = a.appendJSON(b); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"updated_at":`...)
	if b, err = appendTime(b, s.UpdatedAt); err != nil {
		return nil, err
	}
	if result, encoding := TextOrBase64(s.Result); result != "" {
		b = append(b, `,"result":`...)
		b = appendString(b, result)
		if encoding != "" {
			b = append(b, `,"result_encoding":`...)
			b = appendString(b, encoding)
		}
	}
	return append(b, '}'), nil
}

func (a AttemptRecord) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"attempt":`...)
	b = strconv.AppendInt(b, int64(a.Attempt), 10)
	b = append(b, `,"kind":`...)
	b = appendString(b, a.Kind)
	b = append(b, `,"error":`...)
	b = appendString(b, a.Error)
	b = append(b, `,"duration":`...)
	b = appendString(b, a.Duration)
	if a.Version != "" {
		b = append(b, `,"version":`...)
		b = appendString(b, a.Version)
	}
	if a.Node != "" {
		b = append(b, `,"node":`...)
		b = appendString(b, a.Node)
	}
	b = append(b, `,"at":`...)
	b, err := appendTime(b, a.At)
	if err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// appendString quotes s as encoding/json does. Strings it leaves as they
// are (the common case: ids, names, timestamps, durations) are copied; any
// other is left to encoding/json, so that escaping stays exactly its own.
func appendString(b []byte, s string) []byte {
	ascii := true
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&':
			return appendEscaped(b, s)
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if !ascii && (!utf8.ValidString(s) || strings.ContainsRune(s, '\u2028') || strings.ContainsRune(s, '\u2029')) {
		return appendEscaped(b, s)
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendEscaped(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always encodes
	return append(b, q...)
}

// appendTime writes t as time.Time's MarshalJSON does, failing on the
// same years outside [0, 9999].
func appendTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, fmt.Errorf("status time: %w", err)
	}
	return append(b, '"'), nil
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Status) UnmarshalJSON(b []byte) error {
	var in struct {
		statusFields
		Result         string `json:"result"`
		ResultEncoding string `json:"result_encoding"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	*s = Status(in.statusFields)
	switch in.ResultEncoding {
	case "":
		if in.Result != "" {
			s.Result = []byte(in.Result)
		}
	case "base64":
		r, err := base64.StdEncoding.DecodeString(in.Result)
		if err != nil {
			return fmt.Errorf("status result: %w", err)
		}
		s.Result = r
	default:
		return fmt.Errorf("status result: unknown encoding %q", in.ResultEncoding)
	}
	return nil
}
