//go:build wasip1

package sluice

import (
	"errors"
	"strconv"
	"unsafe"
)

// scratch receives the event's fields from the host. It is reused across
// invocations (it only grows), so reading an event costs one host call per
// field and a single allocation for all of them.
var scratch = make([]byte, 4096)

//go:wasmexport handle
func handle() int32 {
	h := handler
	if h == nil {
		setReason("sluice: no handler registered (call sluice.Handle from an init function)")
		return codeFailure
	}
	result, err := invoke(h, readEvent())
	if err == nil {
		setResult(result)
		return codeSuccess
	}
	setReason(err.Error())
	var perm *PermanentError
	if errors.As(err, &perm) {
		return codePermanent
	}
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		ms := int64(0)
		if ra.Delay > 0 {
			ms = int64((ra.Delay + 999_999) / 1_000_000) // round up to whole ms
		}
		hostRetryAfter(ms)
	}
	return codeFailure
}

func invoke(h func(Event) ([]byte, error), e Event) (result []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			result, err = nil, errors.New("panic: "+panicText(v))
		}
	}()
	return h(e)
}

// panicText formats a panic value without fmt, which would add a few hundred
// KiB to every module.
func panicText(v any) string {
	switch v := v.(type) {
	case error:
		return v.Error()
	case string:
		return v
	case interface{ String() string }:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case int:
		return strconv.Itoa(v)
	case int8:
		return strconv.FormatInt(int64(v), 10)
	case int16:
		return strconv.FormatInt(int64(v), 10)
	case int32:
		return strconv.FormatInt(int64(v), 10)
	case int64:
		return strconv.FormatInt(v, 10)
	case uint:
		return strconv.FormatUint(uint64(v), 10)
	case uint8:
		return strconv.FormatUint(uint64(v), 10)
	case uint16:
		return strconv.FormatUint(uint64(v), 10)
	case uint32:
		return strconv.FormatUint(uint64(v), 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case uintptr:
		return strconv.FormatUint(uint64(v), 10)
	case float32:
		return strconv.FormatFloat(float64(v), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return "(value of a type that is not printed)"
}

func setResult(result []byte) {
	if len(result) == 0 {
		return
	}
	if hostResultSet(bytesPtr(result), int32(len(result))) == errTooLarge && len(result) > maxResult {
		Log(Warn, "sluice: result of "+strconv.Itoa(len(result))+" bytes truncated to the 64 KiB limit")
		hostResultSet(bytesPtr(result), maxResult)
	}
}

func setReason(reason string) {
	hostReasonSet(stringPtr(reason), int32(len(reason)))
}

// readEvent reads every field of the current event into scratch, then copies
// them into one fresh allocation that the returned Event refers to.
func readEvent() Event {
	var end [numFields]int // end offset of each field in scratch
	off := 0
	for f := 0; f < numFields; f++ {
		n := readField(int32(f), off)
		off += n
		end[f] = off
	}
	e := Event{Attempt: int(hostEventAttempt())}
	if off == 0 {
		return e
	}
	all := make([]byte, off)
	copy(all, scratch[:off])
	str := func(f int) string {
		start := end[f-1]
		if end[f] == start {
			return ""
		}
		return unsafe.String(&all[start], end[f]-start)
	}
	if end[fieldPayload] > 0 {
		// Capacity capped so that appending to Data cannot reach the bytes
		// the strings below share.
		e.Data = all[:end[fieldPayload]:end[fieldPayload]]
	}
	e.Subject = str(fieldSubject)
	e.ID = str(fieldID)
	e.Binding = str(fieldBinding)
	e.Function = str(fieldFunction)
	if h := str(fieldHeaders); h != "" {
		e.Headers = parseHeaders(h)
	}
	return e
}

// readField copies field f into scratch at off, growing scratch as needed,
// and returns its length (0 for a missing field or any error).
func readField(f int32, off int) int {
	free := scratch[off:]
	n := hostEventGet(f, bytesPtr(free), int32(len(free)))
	if n <= 0 {
		return 0
	}
	if int(n) > len(free) {
		grown := make([]byte, max(2*len(scratch), off+int(n)+4096))
		copy(grown, scratch[:off])
		scratch = grown
		free = scratch[off:]
		n = hostEventGet(f, bytesPtr(free), int32(len(free)))
		if n <= 0 {
			return 0
		}
		n = min(n, int32(len(free)))
	}
	return int(n)
}
