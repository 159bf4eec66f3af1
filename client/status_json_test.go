package client

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
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
