package sandbox

import (
	"bytes"
	"errors"
	"fmt"
)

// Errors of module validation; callers wrap them with the function's name and file.
var (
	ErrNotWasm     = errors.New("not a WebAssembly binary module")
	ErrWasmText    = errors.New("WebAssembly text (WAT) is not accepted; compile it to a binary module (wat2wasm)")
	ErrMalformed   = errors.New("malformed WebAssembly module")
	ErrMemoryLimit = errors.New("memory limit")
	ErrBadABI      = errors.New("module does not follow the sluice guest ABI v1")
)

const pageSize = 64 * 1024

var wasmMagic = []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}

// CapMemory checks that wasm is a binary module and returns a copy whose
// memory maximum is at most limit bytes. Modules that declare no maximum
// (Go's) get one, so memory.grow fails at the cap instead of the host
// running out of memory. A module that imports its memory is refused: the
// ABI has the guest export its own.
func CapMemory(wasm []byte, limit int64) ([]byte, error) {
	if len(wasm) < len(wasmMagic) || !bytes.Equal(wasm[:4], wasmMagic[:4]) {
		if looksLikeWAT(wasm) {
			return nil, ErrWasmText
		}
		return nil, fmt.Errorf("%w (starts with %q)", ErrNotWasm, head(wasm))
	}
	if !bytes.Equal(wasm[4:8], wasmMagic[4:]) {
		return nil, fmt.Errorf("%w: unsupported binary version % x", ErrMalformed, wasm[4:8])
	}
	capPages := uint64(limit / pageSize)
	if capPages < 1 {
		return nil, fmt.Errorf("%w of %d bytes is below one 64 KiB page", ErrMemoryLimit, limit)
	}
	if capPages > 65536 {
		capPages = 65536
	}
	out := make([]byte, 0, len(wasm)+8)
	out = append(out, wasm[:8]...)
	r := reader{b: wasm, off: 8}
	for r.off < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		body, err := r.take(int(size))
		if err != nil {
			return nil, err
		}
		switch id {
		case 2:
			if err := checkImports(body); err != nil {
				return nil, err
			}
		case 5:
			body, err = capMemorySection(body, capPages)
			if err != nil {
				return nil, err
			}
		}
		out = append(out, id)
		out = appendU32(out, uint32(len(body)))
		out = append(out, body...)
	}
	return out, nil
}

func capMemorySection(body []byte, capPages uint64) ([]byte, error) {
	r := reader{b: body}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(nil, n)
	for i := uint32(0); i < n; i++ {
		flags, err := r.byte()
		if err != nil {
			return nil, err
		}
		if flags&^0x03 != 0 {
			return nil, fmt.Errorf("%w: memory flags %#x (64-bit memories are not supported)", ErrMalformed, flags)
		}
		minPages, err := r.u32()
		if err != nil {
			return nil, err
		}
		maxPages := capPages
		if flags&0x01 != 0 {
			declared, err := r.u32()
			if err != nil {
				return nil, err
			}
			maxPages = min(uint64(declared), capPages)
		}
		if uint64(minPages) > capPages {
			return nil, fmt.Errorf("%w: the module needs %d KiB of memory at start, over the limit of %d KiB",
				ErrMemoryLimit, uint64(minPages)*64, capPages*64)
		}
		out = append(out, flags|0x01)
		out = appendU32(out, minPages)
		out = appendU32(out, uint32(maxPages))
	}
	if r.off != len(body) {
		return nil, fmt.Errorf("%w: trailing bytes in the memory section", ErrMalformed)
	}
	return out, nil
}

// checkImports refuses imported memories; function imports are checked
// against the ABI after compilation, where their types are known.
func checkImports(body []byte) error {
	r := reader{b: body}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		mod, err := r.name()
		if err != nil {
			return err
		}
		name, err := r.name()
		if err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0: // function: type index
			_, err = r.u32()
		case 1: // table: reftype + limits
			if _, err = r.byte(); err == nil {
				err = r.skipLimits()
			}
		case 2:
			return fmt.Errorf("%w: it imports its memory (%s.%s); a guest must define and export its own", ErrBadABI, mod, name)
		case 3: // global: valtype + mutability
			if _, err = r.byte(); err == nil {
				_, err = r.byte()
			}
		default:
			return fmt.Errorf("%w: unknown import kind %d", ErrMalformed, kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func looksLikeWAT(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	for bytes.HasPrefix(t, []byte(";;")) {
		if i := bytes.IndexByte(t, '\n'); i >= 0 {
			t = bytes.TrimLeft(t[i:], " \t\r\n")
		} else {
			return false
		}
	}
	return bytes.HasPrefix(t, []byte("(module")) || bytes.HasPrefix(t, []byte("(component"))
}

func head(b []byte) []byte {
	if len(b) > 8 {
		return b[:8]
	}
	return b
}

type reader struct {
	b   []byte
	off int
}

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, fmt.Errorf("%w: unexpected end at byte %d", ErrMalformed, r.off)
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) u32() (uint32, error) {
	var v uint64
	for shift := 0; shift < 35; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			if v > 0xffffffff {
				break
			}
			return uint32(v), nil
		}
	}
	return 0, fmt.Errorf("%w: bad LEB128 integer at byte %d", ErrMalformed, r.off)
}

func (r *reader) take(n int) ([]byte, error) {
	if n < 0 || r.off+n > len(r.b) {
		return nil, fmt.Errorf("%w: section of %d bytes overruns the module at byte %d", ErrMalformed, n, r.off)
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s, nil
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	b, err := r.take(int(n))
	return string(b), err
}

func (r *reader) skipLimits() error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if _, err := r.u32(); err != nil {
		return err
	}
	if flags&0x01 != 0 {
		_, err = r.u32()
	}
	return err
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}
