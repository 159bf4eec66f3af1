package sandbox

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/wasmerio/wasmer-go/wasmer"
)

// Host calls go through an adapter module, because wasmer's C API leaks on
// every call of a host function that has parameters or results: in wasmer
// 2.0.0-rc2 the argument vector it builds for the callback, the result
// vector it preallocates and the one wasmer-go's trampoline puts in its
// place are never freed (16 bytes per value, 144 bytes for an event_get).
// A Go guest makes 7 to 10 such calls per event, so a warm worker grew
// by about 1 KiB per invocation, without bound.
//
// Calls without parameters or results allocate nothing. So the guest's
// imports are satisfied by the exports of a small wasm module, the adapter,
// instantiated in the same store: each export stores its arguments in the
// adapter's own one-page memory ("regs"), calls a host function that takes
// and returns nothing, and returns the result the host left in regs. The
// guest never sees the difference; a call costs one more wasm-to-wasm call.
//
// regs layout: argument i at 8*i (i32 or i64, little-endian), the i32
// result at regResult.

const (
	adapterRaw = "sluice_raw" // namespace of the adapter's parameterless imports
	regsExport = "regs"
	regResult  = 128
	maxArgs    = regResult / 8
)

// adapted lists every host function reached through the adapter: the ABI's
// and the WASI functions the sandbox implements itself.
var adapted = func() map[string]struct{ params, results []wasmer.ValueKind } {
	out := make(map[string]struct{ params, results []wasmer.ValueKind }, len(hostImports)+len(wasiSandboxed))
	for name, sig := range hostImports {
		out[name] = sig
	}
	for name, params := range wasiSandboxed {
		out[name] = struct{ params, results []wasmer.ValueKind }{params, []wasmer.ValueKind{wasmer.I32}}
	}
	return out
}()

// adapterText is the adapter module's source, adapterWasm its binary.
var (
	adapterText = sync.OnceValue(adapterWAT)
	adapterWasm = sync.OnceValues(func() ([]byte, error) { return wasmer.Wat2Wasm(adapterText()) })
)

func adapterWAT() string {
	var b strings.Builder
	b.WriteString("(module\n")
	names := slices.Sorted(func(yield func(string) bool) {
		for name := range adapted {
			if !yield(name) {
				return
			}
		}
	})
	for _, name := range names {
		fmt.Fprintf(&b, "  (import %q %q (func $raw_%s))\n", adapterRaw, name, name)
	}
	fmt.Fprintf(&b, "  (memory (export %q) 1 1)\n", regsExport)
	for _, name := range names {
		sig := adapted[name]
		if len(sig.params) > maxArgs || len(sig.results) != 1 || sig.results[0] != wasmer.I32 {
			panic("sandbox: host function " + name + " does not fit the adapter")
		}
		fmt.Fprintf(&b, "  (func (export %q)", name)
		if len(sig.params) > 0 {
			b.WriteString(" (param")
			for _, k := range sig.params {
				b.WriteString(" " + watType(k))
			}
			b.WriteString(")")
		}
		b.WriteString(" (result i32)\n")
		for i, k := range sig.params {
			fmt.Fprintf(&b, "    (%s.store offset=%d (i32.const 0) (local.get %d))\n", watType(k), 8*i, i)
		}
		fmt.Fprintf(&b, "    (call $raw_%s)\n    (i32.load offset=%d (i32.const 0)))\n", name, regResult)
	}
	b.WriteString(")\n")
	return b.String()
}

func watType(k wasmer.ValueKind) string {
	switch k {
	case wasmer.I32:
		return "i32"
	case wasmer.I64:
		return "i64"
	}
	panic(fmt.Sprintf("sandbox: no adapter for a %s parameter", k))
}

// adapterArtifact returns the adapter compiled by m's engine, serialized:
// read from the compile cache (see Compile), else compiled on first use
// (2-5 ms of Cranelift, and a few MiB of RSS in a worker).
func (m *Module) adapterArtifact() ([]byte, error) {
	m.adapterOnce.Do(func() {
		if m.adapterPath != "" {
			if digest, ok := RecordedDigest(m.adapterPath); ok {
				if b, err := ReadArtifact(m.adapterPath, digest); err == nil && m.adapterLoads(b) {
					m.adapter = b
					return
				}
			}
		}
		wasm, err := adapterWasm()
		if err != nil {
			m.adapterErr = fmt.Errorf("adapter: %w", err)
			return
		}
		store := wasmer.NewStore(m.engine)
		defer store.Close()
		mod, err := wasmer.NewModule(store, wasm)
		if err != nil {
			m.adapterErr = fmt.Errorf("adapter: %w", err)
			return
		}
		defer mod.Close()
		if m.adapter, err = mod.Serialize(); err != nil {
			m.adapterErr = fmt.Errorf("adapter: %w", err)
		}
	})
	return m.adapter, m.adapterErr
}

// adapterLoads tells whether a cached adapter artifact deserializes.
func (m *Module) adapterLoads(b []byte) bool {
	store := wasmer.NewStore(m.engine)
	defer store.Close()
	mod, err := wasmer.DeserializeModule(store, b)
	if err != nil {
		return false
	}
	mod.Close()
	return true
}

// adapterCachePath is where the compile cache in dir keeps the adapter.
func adapterCachePath(dir, engineID string) string {
	if dir == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(engineID + "\x00" + artifactFormat + "\x00" + adapterText()))
	return filepath.Join(dir, "adapter-"+hex.EncodeToString(sum[:]))
}

// cacheAdapter stores the adapter in the compile cache, once.
func (m *Module) cacheAdapter() error {
	if m.adapterPath == "" {
		return nil
	}
	if _, ok := RecordedDigest(m.adapterPath); ok {
		return nil
	}
	b, err := m.adapterArtifact()
	if err != nil {
		return err
	}
	_, err = StoreArtifact(m.adapterPath, b)
	return err
}

// instantiateAdapter instantiates the adapter in the instance's store with
// the host functions in handlers, and returns the adapter's exports that
// stand for them.
func (in *Instance) instantiateAdapter(artifact []byte, handlers map[string]func([]wasmer.Value) int32) (map[string]*wasmer.Function, error) {
	mod, err := wasmer.DeserializeModule(in.store, artifact)
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	in.adapterMod = mod
	noValues := wasmer.NewFunctionType(wasmer.NewValueTypes(), wasmer.NewValueTypes())
	raw := make(map[string]wasmer.IntoExtern, len(adapted))
	for name, sig := range adapted {
		f := handlers[name]
		params := sig.params
		raw[name] = wasmer.NewFunction(in.store, noValues, func([]wasmer.Value) ([]wasmer.Value, error) {
			regs := in.regs.Data()
			args := make([]wasmer.Value, len(params))
			for i, k := range params {
				if k == wasmer.I64 {
					args[i] = wasmer.NewI64(int64(binary.LittleEndian.Uint64(regs[8*i:])))
				} else {
					args[i] = wasmer.NewI32(int32(binary.LittleEndian.Uint32(regs[8*i:])))
				}
			}
			ret := f(args)
			binary.LittleEndian.PutUint32(in.regs.Data()[regResult:], uint32(ret))
			return nil, nil
		})
	}
	imports := wasmer.NewImportObject()
	imports.Register(adapterRaw, raw)
	inst, err := wasmer.NewInstance(mod, imports)
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	in.adapter = inst
	if in.regs, err = inst.Exports.GetMemory(regsExport); err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	out := make(map[string]*wasmer.Function, len(adapted))
	for name := range adapted {
		if out[name], err = inst.Exports.GetRawFunction(name); err != nil {
			return nil, fmt.Errorf("adapter: %w", err)
		}
	}
	return out, nil
}
