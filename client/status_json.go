package client

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// statusFields is Status without its JSON methods.
type statusFields Status

// MarshalJSON writes Result as text when it is UTF-8, else as base64 with
// "result_encoding": "base64": the one encoding of a status, in the KV
// bucket, a Sluice-Reply, the status API and the CLI's --json alike.
func (s Status) MarshalJSON() ([]byte, error) {
	out := struct {
		statusFields
		Result         string `json:"result,omitempty"`
		ResultEncoding string `json:"result_encoding,omitempty"`
	}{statusFields: statusFields(s)}
	out.Result, out.ResultEncoding = TextOrBase64(s.Result)
	return json.Marshal(out)
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
