package functions

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/functions/sandbox"
	"github.com/sluice-run/sluice/internal/jsx"
)

// Limits of the outbound capabilities (docs/ABI.md).
const (
	maxHTTPTimeout  = 10 * time.Second
	maxHTTPResponse = 1 << 20
	maxHTTPRequest  = 1 << 20
	maxKVTimeout    = 10 * time.Second
	// maxPublishTimeout bounds a guest publish waiting for its stream.
	maxPublishTimeout = 10 * time.Second
	maxKVValue        = 1 << 20
	maxKVKey          = 1024
	// kvOverhead is what a KV message needs besides its value, kept free
	// under the broker's max_payload.
	kvOverhead = 4 << 10
	// seenMarkerTTL is how long the seen bucket keeps the marker left by
	// an expired key.
	seenMarkerTTL = time.Second
)

// Bucket names: one key-value bucket per function, one seen bucket per
// function.
const (
	KVBucketPrefix   = "sluice_fn_"
	SeenBucketPrefix = "sluice_seen_"
)

var (
	errNoJetStream    = errors.New("no JetStream for key-value calls")
	errOutOfTime      = errors.New("the invocation's time is up")
	errRedirectDenied = errors.New("redirect to a URL outside allowed_hosts")
)

func newHTTPTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxResponseHeaderBytes = 64 << 10
	return t
}

// callContext bounds one host call by the invocation's deadline and limit;
// the invocation's own context only carries values (shutdown drains). A
// call still waiting at the deadline gets a moment more, so that the
// worker's kill at the deadline decides: the invocation is reported as the
// timeout it is, not as a failed call that raced it.
func (h *host) callContext(limit time.Duration) (context.Context, context.CancelFunc, error) {
	const deadlineGrace = 250 * time.Millisecond
	remaining := time.Until(h.deadline)
	if remaining <= 0 {
		return nil, nil, errOutOfTime
	}
	d := min(remaining+deadlineGrace, limit)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(h.ctx), d)
	return ctx, cancel, nil
}

// HTTP performs an outbound request to one of the function's allowed_hosts.
func (h *host) HTTP(req sandbox.HTTPRequest) (sandbox.HTTPResponse, error) {
	var none sandbox.HTTPResponse
	u, err := url.Parse(req.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Opaque != "" {
		return none, fmt.Errorf("%w: %q is not an absolute http or https URL", sandbox.ErrInvalid, req.URL)
	}
	if !urlAllowed(h.f.cfg.AllowedHosts, u) {
		h.logger().Warn("http request denied", "url", logURL(u), "allowed_hosts", h.f.cfg.AllowedHosts)
		return none, sandbox.ErrDenied
	}
	if !validToken(req.Method) {
		return none, fmt.Errorf("%w: method %q", sandbox.ErrInvalid, req.Method)
	}
	for k, vs := range req.Header {
		if !validToken(k) {
			return none, fmt.Errorf("%w: header name %q", sandbox.ErrInvalid, k)
		}
		for _, v := range vs {
			if strings.ContainsAny(v, "\r\n\x00") {
				return none, fmt.Errorf("%w: header %s", sandbox.ErrInvalid, k)
			}
		}
	}
	if len(req.Body) > maxHTTPRequest {
		return none, sandbox.ErrTooLarge
	}
	ctx, cancel, err := h.callContext(maxHTTPTimeout)
	if err != nil {
		return none, err
	}
	defer cancel()
	var body io.Reader
	if len(req.Body) > 0 {
		body = bytes.NewReader(req.Body)
	}
	hreq, err := http.NewRequestWithContext(ctx, req.Method, u.String(), body)
	if err != nil {
		return none, fmt.Errorf("%w: %w", sandbox.ErrInvalid, err)
	}
	for k, vs := range req.Header {
		for _, v := range vs {
			hreq.Header.Add(k, v)
		}
	}
	var deniedTo *url.URL
	client := &http.Client{Transport: h.f.set.http, CheckRedirect: func(r *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if !urlAllowed(h.f.cfg.AllowedHosts, r.URL) {
			deniedTo = r.URL
			return errRedirectDenied
		}
		return nil
	}}
	resp, err := client.Do(hreq)
	if err != nil {
		if errors.Is(err, errRedirectDenied) {
			h.logger().Warn("http redirect denied", "url", logURL(u), "location", logURL(deniedTo), "allowed_hosts", h.f.cfg.AllowedHosts)
			return none, sandbox.ErrDenied
		}
		h.logger().Warn("http request failed", "url", logURL(u), "error", err)
		return none, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > maxHTTPResponse {
		h.logger().Warn("http response too large", "url", logURL(u), "content_length", resp.ContentLength, "limit_bytes", maxHTTPResponse)
		return none, sandbox.ErrTooLarge
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxHTTPResponse+1))
	if err != nil {
		h.logger().Warn("http response failed", "url", logURL(u), "error", err)
		return none, err
	}
	if len(data) > maxHTTPResponse {
		h.logger().Warn("http response too large", "url", logURL(u), "limit_bytes", maxHTTPResponse)
		return none, sandbox.ErrTooLarge
	}
	return sandbox.HTTPResponse{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// urlAllowed reports whether u falls under one of the allowed URL prefixes:
// the same scheme, host and port (the scheme's default when absent), and a
// path equal to the prefix's path or below it, compared segment by segment
// after resolving "." and ".." (so "/v1" allows "/v1" and "/v1/x" but not
// "/v10" or "/v1/../admin").
func urlAllowed(prefixes []string, u *url.URL) bool {
	if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" || u.Opaque != "" {
		return false
	}
	p := cleanPath(u.Path)
	for _, s := range prefixes {
		a, err := url.Parse(s)
		if err != nil || a.Hostname() == "" {
			continue
		}
		if !strings.EqualFold(a.Scheme, u.Scheme) || !strings.EqualFold(a.Hostname(), u.Hostname()) || portOf(a) != portOf(u) {
			continue
		}
		ap := strings.TrimSuffix(cleanPath(a.Path), "/")
		if ap == "" || p == ap || strings.HasPrefix(p, ap+"/") {
			return true
		}
	}
	return false
}

func cleanPath(p string) string { return path.Clean("/" + p) }

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// logURL is u without credentials, query or fragment.
func logURL(u *url.URL) string {
	if u == nil {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// validToken reports whether s is an HTTP token (RFC 9110), as methods and
// header names must be.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// validKey reports whether key follows JetStream's key-value key rules:
// letters, digits and "-/_=.", not starting or ending with "." nor holding
// "..", at most maxKVKey bytes.
func validKey(key string) bool {
	if key == "" || len(key) > maxKVKey || key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-/_=.", c) >= 0 {
			continue
		}
		return false
	}
	return true
}

// bucket returns the function's key-value bucket (seen: its seen bucket),
// creating it on first use.
func (f *function) bucket(ctx context.Context, seen bool) (jetstream.KeyValue, error) {
	js := f.set.opts.JS
	if js == nil {
		return nil, errNoJetStream
	}
	f.kvMu.Lock()
	defer f.kvMu.Unlock()
	cached := &f.kv
	cfg := jetstream.KeyValueConfig{
		Bucket: KVBucketPrefix + f.cfg.Name, Description: "sluice: key-value store of function " + f.cfg.Name,
		History: 1, Storage: jetstream.FileStorage, Replicas: max(1, f.set.opts.Replicas),
	}
	if seen {
		cached = &f.seenKV
		cfg = jetstream.KeyValueConfig{
			Bucket: SeenBucketPrefix + f.cfg.Name, Description: "sluice: seen keys of function " + f.cfg.Name,
			History: 1, Storage: jetstream.FileStorage, LimitMarkerTTL: seenMarkerTTL,
			Replicas: max(1, f.set.opts.Replicas),
		}
	}
	if *cached != nil {
		return *cached, nil
	}
	kv, err := jsx.KeyValue(ctx, js, cfg)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	*cached = kv
	return kv, nil
}

// kvCall runs op on the function's bucket within the invocation's time.
func (h *host) kvCall(seen bool, op func(context.Context, jetstream.KeyValue) error) error {
	ctx, cancel, err := h.callContext(maxKVTimeout)
	if err != nil {
		return err
	}
	defer cancel()
	kv, err := h.f.bucket(ctx, seen)
	if err != nil {
		h.logger().Warn("key-value store unavailable", "error", err)
		return err
	}
	return op(ctx, kv)
}

// maxValue is the largest value kv_put takes: 1 MiB, or less when the
// broker's max_payload leaves less room.
func (h *host) maxValue() int {
	js := h.f.set.opts.JS
	if js == nil || js.Conn() == nil {
		return maxKVValue
	}
	if mp := int(js.Conn().MaxPayload()); mp > 0 {
		return min(maxKVValue, mp-kvOverhead)
	}
	return maxKVValue
}

func (h *host) KVGet(key string) ([]byte, error) {
	if !validKey(key) {
		return nil, sandbox.ErrInvalid
	}
	var value []byte
	err := h.kvCall(false, func(ctx context.Context, kv jetstream.KeyValue) error {
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			return sandbox.ErrNotFound
		case err != nil:
			h.logger().Warn("kv_get failed", "key", key, "error", err)
			return err
		}
		value = e.Value()
		return nil
	})
	return value, err
}

func (h *host) KVPut(key string, value []byte) error {
	if !validKey(key) {
		return sandbox.ErrInvalid
	}
	if len(value) > h.maxValue() {
		return sandbox.ErrTooLarge
	}
	return h.kvCall(false, func(ctx context.Context, kv jetstream.KeyValue) error {
		if _, err := kv.Put(ctx, key, value); err != nil {
			h.logger().Warn("kv_put failed", "key", key, "error", err)
			return err
		}
		return nil
	})
}

func (h *host) KVDelete(key string) error {
	if !validKey(key) {
		return sandbox.ErrInvalid
	}
	return h.kvCall(false, func(ctx context.Context, kv jetstream.KeyValue) error {
		if err := kv.Delete(ctx, key); err != nil {
			h.logger().Warn("kv_delete failed", "key", key, "error", err)
			return err
		}
		return nil
	})
}

// Seen records key in the function's seen bucket for ttl (kept by the
// broker as a per-message TTL) and reports whether it was there already.
// Keys are stored as their sha256, so any bytes make a key.
func (h *host) Seen(key string, ttl time.Duration) (bool, error) {
	if key == "" || len(key) > maxKVKey || ttl <= 0 {
		return false, sandbox.ErrInvalid
	}
	ttl = (ttl + time.Second - 1).Truncate(time.Second) // whole seconds, as JetStream keeps them
	sum := sha256.Sum256([]byte(key))
	k := hex.EncodeToString(sum[:])
	var dup bool
	err := h.kvCall(true, func(ctx context.Context, kv jetstream.KeyValue) error {
		_, err := kv.Create(ctx, k, nil, jetstream.KeyTTL(ttl))
		switch {
		case errors.Is(err, jetstream.ErrKeyExists):
			dup = true
		case err != nil:
			h.logger().Warn("seen failed", "error", err)
			return err
		}
		return nil
	})
	return dup, err
}

// checkPublish decides a guest's publish to subject: a literal subject of
// at most config.MaxSubjectLen bytes (a longer one would make the server
// close the runtime's connection), matching the function's publish list,
// and never in a reserved namespace ("$…", "_INBOX…", "sluice.…"), whatever
// a wildcard pattern of the list would allow: those would let a guest
// administer the broker, answer others' requests or drive the runtime.
func (h *host) checkPublish(subject string) error {
	if err := config.CheckSendSubject(subject); err != nil {
		h.logger().Warn("publish refused", "error", err)
		return fmt.Errorf("%w: publish: %w", sandbox.ErrInvalid, err)
	}
	if why := config.ReservedSubject(subject); why != "" {
		h.logger().Warn("publish denied: reserved subject", "subject", subject, "reason", why)
		return fmt.Errorf("%w: publish to %q: %s", sandbox.ErrDenied, subject, why)
	}
	if !allowed(h.f.cfg.Publish, subject) {
		h.logger().Warn("publish denied", "subject", subject, "allowed", h.f.cfg.Publish)
		return fmt.Errorf("%w: publish to %q: not in the function's publish list %q", sandbox.ErrDenied, subject, h.f.cfg.Publish)
	}
	return nil
}
