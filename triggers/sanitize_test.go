package triggers

import (
	"testing"

	"github.com/nats-io/nats.go"
)

// TestProducerHeaders: every Nats- header (whatever its case) and every
// Sluice- header but Sluice-Reply is dropped; the rest is kept, and the
// input is not changed.
func TestProducerHeaders(t *testing.T) {
	in := nats.Header{
		"Nats-Msg-Id": {"x"}, "Nats-Expected-Last-Subject-Sequence": {"0"}, "Nats-Expected-Stream": {"S"},
		"Nats-Rollup": {"all"}, "Nats-TTL": {"1s"}, "Nats-Schedule": {"@every 1s"}, "nats-expected-last-sequence": {"0"},
		"Sluice-Binding": {"forged"}, "Sluice-Error": {"forged"}, "sluice-history": {"[]"}, "Sluice-Reply": {"_INBOX.x"},
		"X-App": {"kept"}, "Natsy": {"kept"},
	}
	out := ProducerHeaders(in)
	want := map[string]bool{"Sluice-Reply": true, "X-App": true, "Natsy": true}
	if len(out) != len(want) {
		t.Errorf("kept %v", out)
	}
	for k := range want {
		if out.Get(k) == "" {
			t.Errorf("%s dropped", k)
		}
	}
	if len(in) != 13 {
		t.Errorf("input changed: %v", in)
	}
	ws := WithoutSteering(in)
	if ws.Get("Sluice-Binding") != "forged" || ws.Get("Nats-Msg-Id") != "" || ws["nats-expected-last-sequence"] != nil {
		t.Errorf("WithoutSteering: %v", ws)
	}
}
