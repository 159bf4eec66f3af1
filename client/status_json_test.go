package client

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestStatusResultEncoding: a UTF-8 result is text in a status's JSON, any
// other is base64 with its encoding named, and both read back the same.
func TestStatusResultEncoding(t *testing.T) {
	for _, c := range []struct {
		result []byte
		want   string
	}{
		{[]byte("sent to a@example.com"), `"result":"sent to a@example.com"`},
		{[]byte{0xff, 0x00, 0x01}, `"result":"/wAB","result_encoding":"base64"`},
		{nil, `"state":"succeeded"`},
	} {
		in := Status{ID: "e", Binding: "b", State: StateSucceeded, Result: c.result}
		b, err := json.Marshal(in)
		if err != nil || !strings.Contains(string(b), c.want) {
			t.Fatalf("%q: %s (%v), want %s in it", c.result, b, err, c.want)
		}
		var out Status
		if err := json.Unmarshal(b, &out); err != nil || !bytes.Equal(out.Result, c.result) || out.ID != "e" || out.State != StateSucceeded {
			t.Fatalf("%q read back as %+v (%v)", c.result, out, err)
		}
	}
}

// reflectedStatus is the encoding Status had through encoding/json's
// reflection: AppendJSON must produce the same bytes.
func reflectedStatus(s Status) ([]byte, error) {
	out := struct {
		statusFields
		Result         string `json:"result,omitempty"`
		ResultEncoding string `json:"result_encoding,omitempty"`
	}{statusFields: statusFields(s)}
	out.Result, out.ResultEncoding = TextOrBase64(s.Result)
	return json.Marshal(out)
}

// TestStatusAppendJSONMatchesReflection: the hand-written encoding of a
// status is byte for byte what encoding/json wrote for it, for every
// field set or empty and for strings that need escaping (HTML, control
// characters, invalid UTF-8, U+2028), so that stored statuses read the
// same whichever wrote them.
func TestStatusAppendJSONMatchesReflection(t *testing.T) {
	next := time.Date(2026, 12, 1, 17, 0, 0, 123456789, time.UTC)
	first := time.Date(2026, 11, 30, 1, 2, 3, 0, time.FixedZone("x", 5*3600+1800))
	odd := []string{"", "plain-id_1=", "a\"b\\c", "<script>&amp;</script>", "tab\there\nnl\r\b\f\x01\x1f",
		"caf\u00e9 \u2028\u2029 \U0001F600", "bad\xffutf8\xc3", "\x7f"}
	statuses := []Status{
		{},
		{ID: "e", Binding: "q", Function: "f", State: StateSucceeded, Attempts: 1, MaxAttempts: 5, Subject: "s",
			Stream: "SLUICE_Q_q", Sequence: 1 << 63, Round: -1, Result: []byte("ok"), UpdatedAt: next,
			History: []AttemptRecord{{Attempt: 1, Kind: StateSucceeded, Duration: "12µs", Node: "n", At: next}}},
		{ID: "e", State: StateRetrying, Version: "v1", Error: "boom", ErrorKind: "failed", NextTryAt: &next,
			FirstFailAt: &first, DeadLetter: "dl.q", Interrupted: 2, Result: []byte{0xff, 0},
			History: []AttemptRecord{{Attempt: 1, Kind: "failed", Error: "x"}, {Attempt: 2, Version: "v2", At: first}}},
		{ID: "e", Result: []byte{}, History: []AttemptRecord{}},
	}
	for _, s := range odd {
		statuses = append(statuses, Status{ID: s, Binding: s, Function: s, Version: s, State: s, Error: s, ErrorKind: s,
			Subject: s, Stream: s, DeadLetter: s, Result: []byte(s),
			History: []AttemptRecord{{Kind: s, Error: s, Duration: s, Version: s, Node: s}}})
	}
	for i, s := range statuses {
		want, err := reflectedStatus(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.AppendJSON([]byte("prefix"))
		if err != nil || string(got) != "prefix"+string(want) {
			t.Errorf("status %d:\n got %s (%v)\nwant prefix%s", i, got, err, want)
		}
		if viaMarshal, err := json.Marshal(s); err != nil || !bytes.Equal(viaMarshal, want) {
			t.Errorf("status %d through json.Marshal:\n got %s (%v)\nwant %s", i, viaMarshal, err, want)
		}
	}
}

// TestStatusAppendJSONBadTime: a time that RFC 3339 cannot carry fails
// the encoding, as encoding/json failed it.
func TestStatusAppendJSONBadTime(t *testing.T) {
	s := Status{ID: "e", UpdatedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}
	if _, err := reflectedStatus(s); err == nil {
		t.Fatal("encoding/json accepted year 10000")
	}
	if b, err := s.AppendJSON(nil); err == nil {
		t.Fatalf("AppendJSON wrote %s for year 10000", b)
	}
	if _, err := json.Marshal(s); err == nil {
		t.Fatal("json.Marshal accepted year 10000")
	}
}

func BenchmarkStatusJSON(b *testing.B) {
	now := time.Now().UTC()
	s := Status{ID: "3Fq1ZkQH0T9eYk2Lr8mWc1", Binding: "q", Function: "noop", State: StateSucceeded, Attempts: 1, MaxAttempts: 5,
		Subject: "bench.q", Stream: "SLUICE_Q_q", Sequence: 123456, Round: now.UnixNano(), UpdatedAt: now,
		History: []AttemptRecord{{Attempt: 1, Kind: StateSucceeded, Duration: "12.3µs", Node: "host", At: now}}}
	b.Run("append", func(b *testing.B) {
		for b.Loop() {
			_, _ = s.AppendJSON(make([]byte, 0, 512))
		}
	})
	b.Run("reflect", func(b *testing.B) {
		for b.Loop() {
			_, _ = reflectedStatus(s)
		}
	})
	b.Run("marshal", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(s)
		}
	})
}
