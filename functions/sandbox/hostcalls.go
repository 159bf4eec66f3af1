package sandbox

import (
	"bytes"
	"strings"
	"time"

	"github.com/wasmerio/wasmer-go/wasmer"
)

// Size bounds checked in the sandbox, before a host call leaves the worker
// (the supervisor checks its own, possibly tighter, limits again).
const (
	MaxHTTPMethod  = 32
	MaxHTTPURL     = 8 << 10
	MaxHTTPHeaders = 64 << 10
	MaxHTTPBody    = 1 << 20 // request and response bodies
	MaxKVKey       = 1024    // kv_* and seen keys
	MaxKVValue     = 1 << 20
	// MaxSeenTTL caps seen's ttl.
	MaxSeenTTL = 366 * 24 * time.Hour
)

// HTTPRequest is an outbound request made with http_request.
type HTTPRequest struct {
	Method string
	URL    string
	Header map[string][]string
	Body   []byte
}

// HTTPResponse is the answer to an HTTPRequest.
type HTTPResponse struct {
	Status int
	Header map[string][]string
	Body   []byte
}

// Fields of http_response_get.
const (
	httpFieldBody    = 0
	httpFieldHeaders = 1
)

// ParseHeaders parses lines "Name: value" separated by "\n" (a trailing
// "\r" is dropped, as are empty lines; one space after the colon is
// optional). ok is false when a line has no colon or an empty name.
func ParseHeaders(b []byte) (h map[string][]string, ok bool) {
	h = make(map[string][]string)
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		name, value, found := strings.Cut(line, ":")
		if !found || name == "" {
			return nil, false
		}
		h[name] = append(h[name], strings.TrimPrefix(value, " "))
	}
	return h, true
}

// hostReady reports whether a host call may reach the Host now (not from
// _initialize, and with a Host).
func (in *Instance) hostReady() bool { return in.call != nil && in.call.Host != nil }

// http_request(method, method_len, url, url_len, headers, headers_len, body, body_len) -> status | error
func (in *Instance) httpRequest(args []wasmer.Value) int32 {
	if !in.hostReady() {
		return codeFailed
	}
	var parts [4][]byte
	for i := range parts {
		b, ok := in.guest(args[2*i].I32(), args[2*i+1].I32())
		if !ok {
			return codeBadPointer
		}
		parts[i] = b
	}
	method, url, headers, body := parts[0], parts[1], parts[2], parts[3]
	in.httpResp = nil
	if len(method) > MaxHTTPMethod || len(url) > MaxHTTPURL || len(headers) > MaxHTTPHeaders || len(body) > MaxHTTPBody {
		return codeTooLarge
	}
	h, ok := ParseHeaders(headers)
	if !ok {
		return codeInvalid
	}
	req := HTTPRequest{Method: string(method), URL: string(url), Header: h, Body: bytes.Clone(body)}
	if req.Method == "" {
		req.Method = "GET"
	}
	resp, err := in.call.Host.HTTP(req)
	if err != nil {
		return ErrorCode(err)
	}
	if resp.Status < 100 || resp.Status > 999 {
		return codeFailed
	}
	in.httpResp = &resp
	return int32(resp.Status)
}

// http_response_get(field, buf, buf_len) -> full length | error
func (in *Instance) httpResponseGet(args []wasmer.Value) int32 {
	if in.call == nil {
		return codeFailed
	}
	buf, ok := in.guest(args[1].I32(), args[2].I32())
	if !ok {
		return codeBadPointer
	}
	if in.httpResp == nil {
		return codeNotFound
	}
	var field []byte
	switch args[0].I32() {
	case httpFieldBody:
		field = in.httpResp.Body
	case httpFieldHeaders:
		field = encodeHeaders(in.httpResp.Header)
	default:
		return codeNotFound
	}
	copy(buf, field)
	return int32(len(field))
}

// kv_get(key, key_len, buf, buf_len) -> full length | error
func (in *Instance) kvGet(args []wasmer.Value) int32 {
	if !in.hostReady() {
		return codeFailed
	}
	key, ok := in.guest(args[0].I32(), args[1].I32())
	if !ok {
		return codeBadPointer
	}
	buf, ok := in.guest(args[2].I32(), args[3].I32())
	if !ok {
		return codeBadPointer
	}
	if len(key) == 0 || len(key) > MaxKVKey {
		return codeInvalid
	}
	k := string(key)
	v, err := in.call.Host.KVGet(k)
	if err != nil {
		return ErrorCode(err)
	}
	// buf may alias memory the host call could not change (it does not
	// call into the guest), so it is still valid here.
	copy(buf, v)
	return int32(len(v))
}

// kv_put(key, key_len, value, value_len) -> 0 | error
func (in *Instance) kvPut(args []wasmer.Value) int32 {
	if !in.hostReady() {
		return codeFailed
	}
	key, ok := in.guest(args[0].I32(), args[1].I32())
	if !ok {
		return codeBadPointer
	}
	value, ok := in.guest(args[2].I32(), args[3].I32())
	if !ok {
		return codeBadPointer
	}
	if len(key) == 0 || len(key) > MaxKVKey {
		return codeInvalid
	}
	if len(value) > MaxKVValue {
		return codeTooLarge
	}
	return ErrorCode(in.call.Host.KVPut(string(key), bytes.Clone(value)))
}

// kv_delete(key, key_len) -> 0 | error
func (in *Instance) kvDelete(args []wasmer.Value) int32 {
	if !in.hostReady() {
		return codeFailed
	}
	key, ok := in.guest(args[0].I32(), args[1].I32())
	if !ok {
		return codeBadPointer
	}
	if len(key) == 0 || len(key) > MaxKVKey {
		return codeInvalid
	}
	return ErrorCode(in.call.Host.KVDelete(string(key)))
}

// seen(key, key_len, ttl_ms: i64) -> 0 first time | 1 seen before | error
func (in *Instance) seen(args []wasmer.Value) int32 {
	if !in.hostReady() {
		return codeFailed
	}
	key, ok := in.guest(args[0].I32(), args[1].I32())
	if !ok {
		return codeBadPointer
	}
	ms := args[2].I64()
	if len(key) == 0 || len(key) > MaxKVKey || ms <= 0 {
		return codeInvalid
	}
	ttl := min(time.Duration(min(ms, int64(MaxSeenTTL/time.Millisecond)))*time.Millisecond, MaxSeenTTL)
	// JetStream keeps per-message TTLs in whole seconds, at least one.
	ttl = (ttl + time.Second - 1).Truncate(time.Second)
	dup, err := in.call.Host.Seen(string(key), ttl)
	switch {
	case err != nil:
		return ErrorCode(err)
	case dup:
		return 1
	}
	return 0
}
