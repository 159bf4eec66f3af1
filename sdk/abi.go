//go:build wasip1

package sluice

import "unsafe"

// Host functions of Guest ABI v1 (docs/ABI.md). Pointers are offsets into
// the module's exported memory; on wasm32 an unsafe.Pointer is an i32.

//go:wasmimport sluice event_get
//go:noescape
func hostEventGet(field int32, buf unsafe.Pointer, bufLen int32) int32

//go:wasmimport sluice event_attempt
func hostEventAttempt() int32

//go:wasmimport sluice result_set
//go:noescape
func hostResultSet(buf unsafe.Pointer, length int32) int32

//go:wasmimport sluice reason_set
//go:noescape
func hostReasonSet(buf unsafe.Pointer, length int32) int32

//go:wasmimport sluice retry_after
func hostRetryAfter(ms int64) int32

//go:wasmimport sluice log
//go:noescape
func hostLog(level int32, buf unsafe.Pointer, length int32) int32

//go:wasmimport sluice publish
//go:noescape
func hostPublish(subject unsafe.Pointer, subjectLen int32, data unsafe.Pointer, dataLen int32) int32

//go:wasmimport sluice http_request
//go:noescape
func hostHTTPRequest(method unsafe.Pointer, methodLen int32, url unsafe.Pointer, urlLen int32,
	headers unsafe.Pointer, headersLen int32, body unsafe.Pointer, bodyLen int32) int32

//go:wasmimport sluice http_response_get
//go:noescape
func hostHTTPResponseGet(field int32, buf unsafe.Pointer, bufLen int32) int32

//go:wasmimport sluice kv_get
//go:noescape
func hostKVGet(key unsafe.Pointer, keyLen int32, buf unsafe.Pointer, bufLen int32) int32

//go:wasmimport sluice kv_put
//go:noescape
func hostKVPut(key unsafe.Pointer, keyLen int32, value unsafe.Pointer, valueLen int32) int32

//go:wasmimport sluice kv_delete
//go:noescape
func hostKVDelete(key unsafe.Pointer, keyLen int32) int32

//go:wasmimport sluice seen
//go:noescape
func hostSeen(key unsafe.Pointer, keyLen int32, ttlMs int64) int32

// Fields of http_response_get.
const (
	httpFieldBody    = 0
	httpFieldHeaders = 1
)

// Event fields (event_get).
const (
	fieldPayload  = 0
	fieldSubject  = 1
	fieldID       = 2
	fieldHeaders  = 3
	fieldBinding  = 4
	fieldFunction = 5
	numFields     = 6
)

// Error codes returned by host functions.
const (
	errBadPointer = -1
	errDenied     = -2
	errTooLarge   = -3
	errFailed     = -4
	errNotFound   = -5
	errInvalid    = -6
)

// handle return codes.
const (
	codeSuccess   = 0
	codeFailure   = 1
	codePermanent = 2
)

// maxResult is the host's limit on a result (result_set).
const maxResult = 64 << 10

func bytesPtr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func stringPtr(s string) unsafe.Pointer { return unsafe.Pointer(unsafe.StringData(s)) }
