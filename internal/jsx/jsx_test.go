package jsx_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/internal/jsx"
	"github.com/sluice-run/sluice/internal/testenv"
)

// Each function creates, keeps what exists with the same settings, and
// changes what exists with other settings.
func TestCreateKeepUpdate(t *testing.T) {
	srv := testenv.Server(t)
	_, js := testenv.Connect(t, srv.ClientURL())
	ctx := context.Background()

	cfg := jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, MaxMsgs: 10}
	for range 2 {
		if _, err := jsx.Stream(ctx, js, cfg); err != nil {
			t.Fatal(err)
		}
	}
	cfg.MaxMsgs = 20
	s, err := jsx.Stream(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.MaxMsgs; got != 20 {
		t.Errorf("MaxMsgs after the update = %d, want 20", got)
	}

	cc := jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 5}
	for range 2 {
		if _, err := jsx.Consumer(ctx, js, "S", cc); err != nil {
			t.Fatal(err)
		}
	}
	cc.MaxAckPending = 7
	c, err := jsx.Consumer(ctx, js, "S", cc)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.MaxAckPending; got != 7 {
		t.Errorf("MaxAckPending after the update = %d, want 7", got)
	}

	kvc := jetstream.KeyValueConfig{Bucket: "b", History: 1}
	for range 2 {
		if _, err := jsx.KeyValue(ctx, js, kvc); err != nil {
			t.Fatal(err)
		}
	}
	kvc.History = 3
	kv, err := jsx.KeyValue(ctx, js, kvc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.History() != 3 {
		t.Errorf("history after the update = %d, want 3", st.History())
	}

	oc := jetstream.ObjectStoreConfig{Bucket: "o", MaxBytes: 1 << 20}
	for range 2 {
		if _, err := jsx.ObjectStore(ctx, js, oc); err != nil {
			t.Fatal(err)
		}
	}
	oc.MaxBytes = 2 << 20
	if _, err := jsx.ObjectStore(ctx, js, oc); err != nil {
		t.Fatal(err)
	}
	os, err := js.Stream(ctx, "OBJ_o")
	if err != nil {
		t.Fatal(err)
	}
	if got := os.CachedInfo().Config.MaxBytes; got != 2<<20 {
		t.Errorf("object store MaxBytes after the update = %d, want %d", got, 2<<20)
	}
}
