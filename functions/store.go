package functions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/internal/jsx"
)

// Buckets of the module store, named once in client.
const (
	ModulesBucket   = client.ModulesBucket   // object store: module bytes by version
	FunctionsBucket = client.FunctionsBucket // KV: a Record per function
	// MaxModuleSize bounds a deployed module.
	MaxModuleSize = 64 << 20
)

// Store keeps every version of every function in JetStream, so that every
// node sees the same modules and the live version survives restarts.
type Store struct {
	obj jetstream.ObjectStore
	kv  jetstream.KeyValue
}

// Record is a function's versions, oldest first, and which one is live;
// its ConfigVersion is the version of the module file runtime.hcl named
// when the runtime last started (a changed file wins over a deploy). The
// encoding is client's, which operators read.
type Record = client.FunctionRecord

// VersionInfo describes one version of a function; Source is
// "runtime.hcl" or "deploy".
type VersionInfo = client.VersionInfo

// OpenStore opens the module store, creating it, or changing its number of
// copies, with replicas > 0 (the runtime); with replicas 0 (a client such
// as the CLI) it only opens what a runtime created.
func OpenStore(ctx context.Context, js jetstream.JetStream, replicas int) (*Store, error) {
	if replicas == 0 {
		obj, err := js.ObjectStore(ctx, ModulesBucket)
		if err != nil {
			return nil, fmt.Errorf("module store (has a runtime started on this server?): %w", err)
		}
		kv, err := js.KeyValue(ctx, FunctionsBucket)
		if err != nil {
			return nil, fmt.Errorf("function versions (has a runtime started on this server?): %w", err)
		}
		return &Store{obj: obj, kv: kv}, nil
	}
	obj, err := jsx.ObjectStore(ctx, js, jetstream.ObjectStoreConfig{
		Bucket: ModulesBucket, Description: "sluice: function modules by version", Storage: jetstream.FileStorage,
		Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("module store: %w", err)
	}
	kv, err := jsx.KeyValue(ctx, js, jetstream.KeyValueConfig{
		Bucket: FunctionsBucket, Description: "sluice: function versions", History: 5, Storage: jetstream.FileStorage,
		Replicas: replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("function versions: %w", err)
	}
	return &Store{obj: obj, kv: kv}, nil
}

// Version is the version of a module: the hex sha256 of its bytes.
func Version(wasm []byte) string {
	sum := sha256.Sum256(wasm)
	return hex.EncodeToString(sum[:])
}

// PutModule stores wasm (once per version) and returns its version.
func (s *Store) PutModule(ctx context.Context, wasm []byte) (string, error) {
	v := Version(wasm)
	if _, err := s.obj.GetInfo(ctx, v); err == nil {
		return v, nil
	}
	if _, err := s.obj.PutBytes(ctx, v, wasm); err != nil {
		return "", fmt.Errorf("store module %s: %w", v[:12], err)
	}
	return v, nil
}

// Module returns the bytes of a stored version, checked against it.
func (s *Store) Module(ctx context.Context, version string) ([]byte, error) {
	b, err := s.obj.GetBytes(ctx, version)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", version, err)
	}
	if Version(b) != version {
		return nil, fmt.Errorf("module %s: stored bytes do not match their version", version)
	}
	return b, nil
}

// Record returns a function's record; ok is false when it has none.
func (s *Store) Record(ctx context.Context, name string) (Record, bool, error) {
	e, err := s.kv.Get(ctx, name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{Name: name}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	var r Record
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		return Record{}, false, fmt.Errorf("function %s record: %w", name, err)
	}
	return r, true, nil
}

// Records returns every function's record.
func (s *Store) Records(ctx context.Context) ([]Record, error) {
	keys, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	var out []Record
	for k := range keys.Keys() {
		r, ok, err := s.Record(ctx, k)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// SetLive makes version the live one of a function, adding it to the
// record when it is new.
func (s *Store) SetLive(ctx context.Context, name string, info VersionInfo, configVersion string) (Record, error) {
	r, _, err := s.Record(ctx, name)
	if err != nil {
		return Record{}, err
	}
	known := false
	for _, v := range r.Versions {
		known = known || v.Version == info.Version
	}
	if !known {
		r.Versions = append(r.Versions, info)
	}
	r.Name, r.Live = name, info.Version
	if configVersion != "" {
		r.ConfigVersion = configVersion
	}
	b, err := json.Marshal(r)
	if err != nil {
		return Record{}, err
	}
	if _, err := s.kv.Put(ctx, name, b); err != nil {
		return Record{}, err
	}
	return r, nil
}

// Watch streams every later change of a function's record.
func (s *Store) Watch(ctx context.Context) (jetstream.KeyWatcher, error) {
	return s.kv.WatchAll(ctx, jetstream.UpdatesOnly())
}

// DecodeRecord reads a record from a KV entry.
func DecodeRecord(e jetstream.KeyValueEntry) (Record, error) {
	var r Record
	err := json.Unmarshal(e.Value(), &r)
	return r, err
}
