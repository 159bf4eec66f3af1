package doccheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmerio/wasmer-go/wasmer"

	"github.com/sluice-run/sluice/functions/sandbox"
)

// wasmFeatures are the WebAssembly features docs/ABI.md lists, each as the
// body of a handle function (returning i32) that uses it, and whether the
// runtime accepts it.
var wasmFeatures = []struct {
	name     string
	memory   string // the memory declaration
	extra    string // module fields beside handle
	body     string
	accepted bool
}{
	{"mutable globals", "1", "(global $g (export \"g\") (mut i32) (i32.const 0))", "(global.set $g (i32.const 1)) (global.get $g) (i32.const 1) (i32.sub)", true},
	{"sign-extension operators", "1", "", "(i32.extend8_s (i32.const 0x100))", true},
	{"non-trapping float-to-int conversions", "1", "", "(i32.trunc_sat_f32_s (f32.const -0.5))", true},
	{"multi-value", "1", "(func $two (result i32 i32) (i32.const 1) (i32.const 1))", "(call $two) (i32.sub)", true},
	{"bulk memory", "1", "", "(memory.fill (i32.const 0) (i32.const 0) (i32.const 16)) (i32.load (i32.const 0))", true},
	{"reference types", "1", "(table 1 funcref)", "(ref.is_null (table.get 0 (i32.const 0))) (i32.const 1) (i32.sub)", true},
	{"SIMD", "1", "", "(i32x4.extract_lane 0 (v128.const i32x4 0 1 2 3))", true},
	{"threads (shared memory, atomics)", "1 1 shared", "", "(i32.atomic.load (i32.const 0))", false},
	{"tail calls", "1", "(func $zero (result i32) (i32.const 0))", "(return_call $zero)", false},
}

// TestWasmFeaturesAsDocumented compiles, instantiates and runs a module
// using each feature, and checks that the runtime accepts (handle returns
// 0) or refuses it at compile time as docs/ABI.md says.
func TestWasmFeaturesAsDocumented(t *testing.T) {
	abi, err := os.ReadFile(filepath.Join("..", "..", "docs", "ABI.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := strings.Join(strings.Fields(string(abi)), " ") // a name may span lines
	engine := sandbox.NewEngine("")
	for _, f := range wasmFeatures {
		t.Run(f.name, func(t *testing.T) {
			if !strings.Contains(doc, f.name) {
				t.Errorf("docs/ABI.md does not mention %q", f.name)
			}
			wat := `(module (memory (export "memory") ` + f.memory + `) ` + f.extra +
				` (func (export "handle") (result i32) ` + f.body + `))`
			wasm, err := wasmer.Wat2Wasm(wat)
			if err != nil {
				t.Fatalf("wat2wasm: %v", err)
			}
			mod, err := engine.Compile(wasm, 16<<20)
			if !f.accepted {
				if err == nil {
					t.Fatal("compiled; docs/ABI.md says it is refused")
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatalf("refused (%v); docs/ABI.md says it is accepted", err)
			}
			in, err := mod.Instantiate(nil)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			out := in.Handle(&sandbox.Call{Limits: sandbox.Limits{ResultBytes: 1 << 10, ReasonBytes: 1 << 10}})
			if out.Err != nil || out.Status != sandbox.StatusOK {
				t.Fatalf("handle: status %d, err %v; want 0", out.Status, out.Err)
			}
		})
	}
}
