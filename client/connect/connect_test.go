package connect

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestResolveOrder: an explicit server wins over SLUICE_SERVER, which wins
// over NATS_URL, which wins over the context's URL and the default.
func TestResolveOrder(t *testing.T) {
	ctxFile := filepath.Join(t.TempDir(), "prod.json")
	if err := os.WriteFile(ctxFile, []byte(`{"url": "nats://ctx.example:4222"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name               string
		opts               Options
		sluiceEnv, natsEnv string
		want               string
	}{
		{"default", Options{}, "", "", DefaultURL},
		{"context", Options{Context: ctxFile}, "", "", "nats://ctx.example:4222"},
		{"NATS_URL over the context", Options{Context: ctxFile}, "", "nats://env:1", "nats://env:1"},
		{"SLUICE_SERVER over NATS_URL", Options{}, "nats://sluice:2", "nats://env:1", "nats://sluice:2"},
		{"explicit over both", Options{Server: "nats://flag:3"}, "nats://sluice:2", "nats://env:1", "nats://flag:3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("SLUICE_SERVER", c.sluiceEnv)
			t.Setenv("NATS_URL", c.natsEnv)
			t.Setenv("NATS_CONTEXT", "")
			url, _, err := c.opts.Resolve()
			if err != nil || url != c.want {
				t.Fatalf("url %q, %v; want %q", url, err, c.want)
			}
		})
	}
}

// TestResolveRefusesHalfATLSPair: a certificate without its key (or the
// reverse) is an options error, not a connection without TLS.
func TestResolveRefusesHalfATLSPair(t *testing.T) {
	t.Setenv("NATS_CONTEXT", "")
	if _, _, err := (Options{TLSCert: "c.pem"}).Resolve(); !errors.Is(err, ErrOptions) {
		t.Fatalf("cert without key: %v, want ErrOptions", err)
	}
}
