// Package sandbox runs guest WebAssembly modules with wasmer-go: it checks
// a module against guest ABI v1 (docs/ABI.md), caps its memory, compiles it
// once (with an on-disk cache of compiled artifacts), and instantiates it
// with the host functions of the `sluice` module.
//
// wasmer objects are not goroutine-safe: an Instance must be created, used
// and closed by one goroutine. Only Engine is shared.
package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/wasmerio/wasmer-go/wasmer"
)

// Tier is a compiler: a fast one that serves at once, and an optimizing
// one whose code runs faster and replaces it (tiered compilation).
type Tier int

const (
	// TierOptimized compiles with Cranelift: slow to compile (a second or
	// two for a 2 MB Go guest), fast to run.
	TierOptimized Tier = iota
	// TierFast compiles with Singlepass: many times faster to compile, its
	// code slower.
	TierFast
)

func (t Tier) String() string {
	if t == TierFast {
		return "singlepass"
	}
	return "cranelift"
}

// FastTierAvailable reports whether this build of wasmer has the fast
// tier's compiler.
func FastTierAvailable() bool { return wasmer.IsCompilerAvailable(wasmer.SINGLEPASS) }

// engineID names the compiler and engine that produced a cached artifact, so
// an upgrade never deserializes an incompatible one, and the two tiers'
// artifacts of one module never meet.
func engineID(t Tier) string { return "wasmer-2.0.0-rc2-" + t.String() + "-universal" }

// Engine compiles modules. It is safe for concurrent use.
type Engine struct {
	engine   *wasmer.Engine
	id       string
	cacheDir string
}

// NewEngine returns an engine of the optimizing tier that keeps compiled
// artifacts in cacheDir ("" disables the cache).
func NewEngine(cacheDir string) *Engine { return NewTierEngine(cacheDir, TierOptimized) }

// NewTierEngine returns an engine that compiles with tier's compiler (the
// fast tier only when FastTierAvailable).
func NewTierEngine(cacheDir string, tier Tier) *Engine {
	cfg := wasmer.NewConfig().UseUniversalEngine()
	if tier == TierFast {
		cfg.UseSinglepassCompiler()
	} else {
		cfg.UseCraneliftCompiler()
	}
	return &Engine{engine: wasmer.NewEngineWithConfig(cfg), id: engineID(tier), cacheDir: cacheDir}
}

// Module is a compiled, validated guest module, ready to instantiate on any
// goroutine.
type Module struct {
	// Version is the hex sha256 of the module bytes as deployed.
	Version string
	// MemoryLimit is the cap applied to the module's memory, in bytes.
	MemoryLimit int64
	// CacheHit tells whether the compiled artifact came from the disk cache.
	CacheHit bool
	// ArtifactPath is the compiled artifact's key in the cache ("" without a
	// cache).
	ArtifactPath string

	engine *wasmer.Engine

	// Every instance is made from one deserialized module: its compiled
	// code and metadata are immutable, and each instance has its own
	// store, memory, tables and globals. A Go guest's module holds about
	// 20 MB in wasmer; deserializing it per instance cost that, and 13 ms,
	// for each instance a worker added.
	modMu      sync.Mutex // guards serialized, free and shared
	serialized []byte
	free       func()         // returns a loaded artifact's memory once it is deserialized (LoadArtifacts)
	shared     *wasmer.Module // the deserialized module, once an instance needed it

	adapterOnce sync.Once // compiles or loads the host-call adapter (adapter.go)
	adapterPath string    // its place in the compile cache ("" without one)
	adapter     []byte
	adapterErr  error
}

// Compile validates wasm against the ABI, caps its memory at memLimit bytes
// and compiles it, or loads the artifact compiled earlier for the same bytes
// and limit when its digest record matches (cache.go). Compile runs the
// module's _initialize once (probe), so it belongs in a process that may
// run guest code.
func (e *Engine) Compile(wasm []byte, memLimit int64) (*Module, error) {
	sum := sha256.Sum256(wasm)
	m := &Module{Version: hex.EncodeToString(sum[:]), MemoryLimit: memLimit, engine: e.engine, adapterPath: adapterCachePath(e.cacheDir, e.id)}
	capped, err := CapMemory(wasm, memLimit)
	if err != nil {
		return nil, err
	}
	cachePath := artifactPath(e.cacheDir, e.id, sum, memLimit)
	m.ArtifactPath = cachePath
	if cachePath != "" {
		if digest, ok := RecordedDigest(cachePath); ok {
			if ser, err := ReadArtifact(cachePath, digest); err == nil {
				m.serialized = ser
				if err := m.probe(); err == nil {
					m.CacheHit = true
					_ = m.cacheAdapter() // best effort: instances compile it without
					return m, nil
				}
			}
			// A damaged or stale artifact: fall through and recompile.
		}
	}
	if m.serialized, err = e.compile(capped); err != nil {
		return nil, err
	}
	if err := m.probe(); err != nil {
		return nil, err
	}
	if cachePath != "" {
		if _, err := StoreArtifact(cachePath, m.serialized); err != nil {
			return nil, fmt.Errorf("compile cache: %w", err)
		}
		if err := m.cacheAdapter(); err != nil {
			return nil, fmt.Errorf("compile cache: %w", err)
		}
	}
	return m, nil
}

// compile validates a capped module and returns its serialized artifact.
func (e *Engine) compile(capped []byte) ([]byte, error) {
	store := wasmer.NewStore(e.engine)
	defer store.Close()
	mod, err := wasmer.NewModule(store, capped)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrMalformed, err)
	}
	defer mod.Close()
	if err := checkABI(mod); err != nil {
		return nil, err
	}
	ser, err := mod.Serialize()
	if err != nil {
		return nil, fmt.Errorf("serialize compiled module: %w", err)
	}
	return ser, nil
}

// CompileArtifacts validates wasm against the ABI, caps its memory and
// returns the compiled artifacts of the module and of the host-call
// adapter, without running any of the module's code and without touching
// the disk: a compile worker hands them to its supervisor, which stores
// them with their digests.
func (e *Engine) CompileArtifacts(wasm []byte, memLimit int64) (module, adapter []byte, err error) {
	capped, err := CapMemory(wasm, memLimit)
	if err != nil {
		return nil, nil, err
	}
	if module, err = e.compile(capped); err != nil {
		return nil, nil, err
	}
	m := &Module{engine: e.engine}
	if adapter, err = m.adapterArtifact(); err != nil {
		return nil, nil, err
	}
	return module, adapter, nil
}

// LoadArtifacts loads the artifacts of a module and of its adapter, each
// only if its bytes match the digest the runtime recorded when it stored
// them: deserializing is not validation.
func (e *Engine) LoadArtifacts(paths Artifacts, module, adapter Digest, memLimit int64) (*Module, error) {
	ser, free, err := readArtifactMapped(paths.Module, module)
	if err != nil {
		return nil, err
	}
	ad, err := ReadArtifact(paths.Adapter, adapter)
	if err != nil {
		free()
		return nil, err
	}
	m := &Module{MemoryLimit: memLimit, ArtifactPath: paths.Module, engine: e.engine, serialized: ser, free: free, adapter: ad}
	m.adapterOnce.Do(func() {})
	return m, nil
}

func artifactPath(cacheDir, engineID string, module Digest, memLimit int64) string {
	if cacheDir == "" {
		return ""
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%s\x00%x\x00%d", engineID, artifactFormat, module, memLimit))
	return filepath.Join(cacheDir, hex.EncodeToString(sum[:]))
}

// probe instantiates the module once with inert host functions, which
// proves every import resolves (including WASI's) and _initialize succeeds.
func (m *Module) probe() error {
	inst, err := m.Instantiate(nil)
	if err != nil {
		return err
	}
	inst.Close()
	return nil
}

func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// hostImports lists the ABI's host functions with their signatures.
var hostImports = map[string]struct{ params, results []wasmer.ValueKind }{
	"event_get":     {[]wasmer.ValueKind{wasmer.I32, wasmer.I32, wasmer.I32}, []wasmer.ValueKind{wasmer.I32}},
	"event_attempt": {nil, []wasmer.ValueKind{wasmer.I32}},
	"result_set":    {[]wasmer.ValueKind{wasmer.I32, wasmer.I32}, []wasmer.ValueKind{wasmer.I32}},
	"reason_set":    {[]wasmer.ValueKind{wasmer.I32, wasmer.I32}, []wasmer.ValueKind{wasmer.I32}},
	"retry_after":   {[]wasmer.ValueKind{wasmer.I64}, []wasmer.ValueKind{wasmer.I32}},
	"log":           {[]wasmer.ValueKind{wasmer.I32, wasmer.I32, wasmer.I32}, []wasmer.ValueKind{wasmer.I32}},
	"publish":       {[]wasmer.ValueKind{wasmer.I32, wasmer.I32, wasmer.I32, wasmer.I32}, []wasmer.ValueKind{wasmer.I32}},
	"http_request": {[]wasmer.ValueKind{wasmer.I32, wasmer.I32, wasmer.I32, wasmer.I32, wasmer.I32, wasmer.I32, wasmer.I32, wasmer.I32},
		[]wasmer.ValueKind{wasmer.I32}},
	"http_response_get": {[]wasmer.ValueKind{wasmer.I32, wasmer.I32, wasmer.I32}, []wasmer.ValueKind{wasmer.I32}},
	"kv_get":            {[]wasmer.ValueKind{wasmer.I32, wasmer.I32, wasmer.I32, wasmer.I32}, []wasmer.ValueKind{wasmer.I32}},
	"kv_put":            {[]wasmer.ValueKind{wasmer.I32, wasmer.I32, wasmer.I32, wasmer.I32}, []wasmer.ValueKind{wasmer.I32}},
	"kv_delete":         {[]wasmer.ValueKind{wasmer.I32, wasmer.I32}, []wasmer.ValueKind{wasmer.I32}},
	"seen":              {[]wasmer.ValueKind{wasmer.I32, wasmer.I32, wasmer.I64}, []wasmer.ValueKind{wasmer.I32}},
}

const hostModule = "sluice"
const wasiModule = "wasi_snapshot_preview1"

func checkABI(mod *wasmer.Module) error {
	var problems []error
	for _, imp := range mod.Imports() {
		switch imp.Module() {
		case wasiModule:
		case hostModule:
			want, ok := hostImports[imp.Name()]
			if !ok {
				problems = append(problems, fmt.Errorf("it imports %s.%s, which ABI v1 does not offer", imp.Module(), imp.Name()))
				continue
			}
			if imp.Type().Kind() != wasmer.FUNCTION {
				problems = append(problems, fmt.Errorf("it imports %s.%s as a %s, not a function", imp.Module(), imp.Name(), imp.Type().Kind()))
				continue
			}
			ft := imp.Type().IntoFunctionType()
			if !sameKinds(ft.Params(), want.params) || !sameKinds(ft.Results(), want.results) {
				problems = append(problems, fmt.Errorf("it imports %s.%s with type %s, ABI v1 defines %s",
					imp.Module(), imp.Name(), signature(kinds(ft.Params()), kinds(ft.Results())), signature(want.params, want.results)))
			}
		default:
			problems = append(problems, fmt.Errorf("it imports %s.%s; only the %q and %q modules are offered", imp.Module(), imp.Name(), hostModule, wasiModule))
		}
	}
	var hasHandle, hasMemory, hasStart, hasInit bool
	for _, exp := range mod.Exports() {
		switch exp.Name() {
		case "_start":
			hasStart = true
		case "_initialize":
			hasInit = true
		case "handle":
			hasHandle = true
			if exp.Type().Kind() != wasmer.FUNCTION {
				problems = append(problems, errors.New("its export handle is not a function"))
				continue
			}
			ft := exp.Type().IntoFunctionType()
			if len(ft.Params()) != 0 || !sameKinds(ft.Results(), []wasmer.ValueKind{wasmer.I32}) {
				problems = append(problems, fmt.Errorf("its export handle has type %s, want () -> i32", signature(kinds(ft.Params()), kinds(ft.Results()))))
			}
		case "memory":
			hasMemory = exp.Type().Kind() == wasmer.MEMORY
		}
	}
	if !hasHandle {
		problems = append(problems, errors.New("it does not export a function named handle"))
	}
	if !hasMemory {
		problems = append(problems, errors.New("it does not export its memory as \"memory\""))
	}
	if hasStart && !hasInit {
		// A command's initialization lives in _start, which a reactor
		// host never calls: every event would run uninitialized.
		problems = append(problems, errors.New("it exports _start (a WASI command), which sluice never calls: build a reactor that exports _initialize instead "+
			"(C: clang -mexec-model=reactor; AssemblyScript: asc --exportStart _initialize; Rust: a cdylib crate; Go: -buildmode=c-shared)"))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %w", ErrBadABI, errors.Join(problems...))
	}
	return nil
}

func kinds(vts []*wasmer.ValueType) []wasmer.ValueKind {
	out := make([]wasmer.ValueKind, len(vts))
	for i, vt := range vts {
		out[i] = vt.Kind()
	}
	return out
}

func sameKinds(vts []*wasmer.ValueType, want []wasmer.ValueKind) bool {
	got := kinds(vts)
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

func signature(params, results []wasmer.ValueKind) string {
	return fmt.Sprintf("%v -> %v", params, results)
}
