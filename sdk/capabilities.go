//go:build wasip1

package sluice

import (
	"sort"
	"strings"
	"time"
)

// HTTPRequest is an outbound HTTP request (HTTP).
type HTTPRequest struct {
	// Method is the HTTP method; "" means GET.
	Method string
	// URL is an absolute http:// or https:// URL under one of the
	// function's allowed_hosts.
	URL string
	// Header holds the request headers.
	Header map[string][]string
	// Body is the request body (at most 1 MiB).
	Body []byte
}

// HTTPResponse is the answer to an HTTPRequest.
type HTTPResponse struct {
	// Status is the HTTP status code.
	Status int
	// Header holds the response headers, names in canonical form.
	Header map[string][]string
	// Body is the whole response body (at most 1 MiB).
	Body []byte
}

// HTTP performs req on the host and returns the response, whatever its
// status. It fails with ErrDenied for a URL (or a redirect) outside the
// function's allowed_hosts, ErrTooLarge for a request or response body
// over 1 MiB, ErrInvalid for a malformed URL, method or header, and
// ErrFailed when the server could not be reached or did not answer within
// the invocation's remaining time (at most 10s). Redirects within
// allowed_hosts are followed.
func HTTP(req HTTPRequest) (HTTPResponse, error) {
	method := req.Method
	if method == "" {
		method = "GET"
	}
	hdr := formatHeaders(req.Header)
	rc := hostHTTPRequest(stringPtr(method), int32(len(method)), stringPtr(req.URL), int32(len(req.URL)),
		stringPtr(hdr), int32(len(hdr)), bytesPtr(req.Body), int32(len(req.Body)))
	if err := codeError("http", rc); err != nil {
		return HTTPResponse{}, err
	}
	resp := HTTPResponse{Status: int(rc)}
	resp.Body = readHTTPField(httpFieldBody)
	if h := readHTTPField(httpFieldHeaders); len(h) > 0 {
		resp.Header = parseHeaders(string(h))
	}
	return resp, nil
}

// Fetch is HTTP for the common case: it returns the status and body of
// method url with the given headers (one value each) and body.
func Fetch(method, url string, headers map[string]string, body []byte) (status int, respBody []byte, err error) {
	req := HTTPRequest{Method: method, URL: url, Body: body}
	if len(headers) > 0 {
		req.Header = make(map[string][]string, len(headers))
		for k, v := range headers {
			req.Header[k] = []string{v}
		}
	}
	resp, err := HTTP(req)
	if err != nil {
		return 0, nil, err
	}
	return resp.Status, resp.Body, nil
}

// readHTTPField reads a field of the last HTTP response.
func readHTTPField(field int32) []byte {
	n := hostHTTPResponseGet(field, nil, 0)
	if n <= 0 {
		return nil
	}
	buf := make([]byte, n)
	if m := hostHTTPResponseGet(field, bytesPtr(buf), n); m < n {
		return buf[:max(m, 0)]
	}
	return buf
}

// formatHeaders writes h as the ABI's header lines. Values must not hold
// line breaks: the host refuses such a request with ErrInvalid.
func formatHeaders(h map[string][]string) string {
	if len(h) == 0 {
		return ""
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, v := range h[k] {
			if strings.ContainsAny(v, "\r\n") {
				// Make the host refuse it rather than split the line.
				v = strings.NewReplacer("\r", "\x00", "\n", "\x00").Replace(v)
			}
			b.WriteString(k)
			b.WriteString(": ")
			b.WriteString(v)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// KVGet returns the value of key in the function's key-value store (a
// JetStream KV bucket of its own, which no other function can read), or
// ErrNotFound. Keys are 1 to 1024 bytes of letters, digits and "-/_=.",
// neither starting nor ending with "." (ErrInvalid otherwise).
func KVGet(key string) ([]byte, error) {
	buf := scratch
	for range 4 { // the value may change between calls; give up eventually
		n := hostKVGet(stringPtr(key), int32(len(key)), bytesPtr(buf), int32(len(buf)))
		if err := codeError("kv_get", n); err != nil {
			return nil, err
		}
		if int(n) <= len(buf) {
			out := make([]byte, n)
			copy(out, buf[:n])
			return out, nil
		}
		buf = make([]byte, n)
	}
	return nil, &callError{op: "kv_get", err: ErrFailed}
}

// KVPut sets key to value (at most 1 MiB) in the function's key-value
// store.
func KVPut(key string, value []byte) error {
	return codeError("kv_put", hostKVPut(stringPtr(key), int32(len(key)), bytesPtr(value), int32(len(value))))
}

// KVDelete removes key from the function's key-value store. Removing an
// absent key is not an error.
func KVDelete(key string) error {
	return codeError("kv_delete", hostKVDelete(stringPtr(key), int32(len(key))))
}

// Seen records key for ttl and reports whether it had been recorded before
// (and had not expired): false the first time, true after. It is atomic
// across every instance and node, so
//
//	if dup, err := sluice.Seen("charge/"+e.ID, 24*time.Hour); err != nil {
//		return nil, err
//	} else if !dup {
//		// do the effect once
//	}
//
// makes an effect happen at most once per event id within the ttl. Keys
// are any 1 to 1024 bytes; ttl is rounded up to whole seconds (at least
// one) and capped at 366 days. Note that the key is recorded before the
// effect: an invocation that fails after Seen will see true when retried.
func Seen(key string, ttl time.Duration) (bool, error) {
	ttl = min(ttl, 366*24*time.Hour)
	ms := int64((ttl + time.Millisecond - 1) / time.Millisecond)
	if ms < 1 {
		ms = 1
	}
	rc := hostSeen(stringPtr(key), int32(len(key)), ms)
	if err := codeError("seen", rc); err != nil {
		return false, err
	}
	return rc == 1, nil
}
