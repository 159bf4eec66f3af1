package worker

import (
	"fmt"
	"strconv"
	"time"

	"github.com/sluice-run/sluice/functions/sandbox"
)

// Host calls other than publish and log travel as one generic frame pair:
// msgCall {name, args} from the worker, msgCallReply {code, data} from the
// supervisor. code is the ABI's (0 or a negative error; http_request's is
// the status); args and data are the call's fields, as below.
//
//	name        args                          code / data
//	http        method, url, headers, body    status / headers, body
//	kv_get      key                           0 / value
//	kv_put      key, value                    0
//	kv_delete   key                           0
//	seen        key, ttl (ns, decimal)        0 first time, 1 seen before
//
// Headers are encoded as lines "Name: value\n" (sandbox.EncodeHeaders).

// call sends one host call and waits for its reply.
func (h *hostProxy) call(name string, args ...[]byte) (int64, [][]byte, error) {
	r, err := h.roundTrip(msgCall, func(e *enc) {
		e.i64(h.id)
		e.str(name)
		e.fields(args)
	})
	if err != nil {
		return 0, nil, err
	}
	if r.typ != msgCallReply {
		return 0, nil, fmt.Errorf("unexpected message %d awaiting a host call reply", r.typ)
	}
	return r.code, r.data, nil
}

func (h *hostProxy) HTTP(req sandbox.HTTPRequest) (sandbox.HTTPResponse, error) {
	code, data, err := h.call("http", []byte(req.Method), []byte(req.URL), sandbox.EncodeHeaders(req.Header), req.Body)
	if err != nil {
		return sandbox.HTTPResponse{}, err
	}
	if err := sandbox.CodeError(code, "http request"); err != nil {
		return sandbox.HTTPResponse{}, err
	}
	if len(data) != 2 {
		return sandbox.HTTPResponse{}, errFrame
	}
	hdr, _ := sandbox.ParseHeaders(data[0])
	return sandbox.HTTPResponse{Status: int(code), Header: hdr, Body: data[1]}, nil
}

func (h *hostProxy) KVGet(key string) ([]byte, error) {
	code, data, err := h.call("kv_get", []byte(key))
	if err != nil {
		return nil, err
	}
	if err := sandbox.CodeError(code, "kv_get"); err != nil {
		return nil, err
	}
	if len(data) != 1 {
		return nil, errFrame
	}
	return data[0], nil
}

func (h *hostProxy) KVPut(key string, value []byte) error {
	code, _, err := h.call("kv_put", []byte(key), value)
	if err != nil {
		return err
	}
	return sandbox.CodeError(code, "kv_put")
}

func (h *hostProxy) KVDelete(key string) error {
	code, _, err := h.call("kv_delete", []byte(key))
	if err != nil {
		return err
	}
	return sandbox.CodeError(code, "kv_delete")
}

func (h *hostProxy) Seen(key string, ttl time.Duration) (bool, error) {
	code, _, err := h.call("seen", []byte(key), strconv.AppendInt(nil, int64(ttl), 10))
	if err != nil {
		return false, err
	}
	if err := sandbox.CodeError(code, "seen"); err != nil {
		return false, err
	}
	return code == 1, nil
}

// dispatch answers one msgCall with host, in the supervisor.
func dispatch(host Host, name string, args [][]byte) (code int64, data [][]byte) {
	bad := int64(sandbox.ErrorCode(sandbox.ErrInvalid))
	switch {
	case name == "http" && len(args) == 4:
		hdr, ok := sandbox.ParseHeaders(args[2])
		if !ok {
			return bad, nil
		}
		resp, err := host.HTTP(sandbox.HTTPRequest{Method: string(args[0]), URL: string(args[1]), Header: hdr, Body: args[3]})
		if err != nil {
			return int64(sandbox.ErrorCode(err)), nil
		}
		return int64(resp.Status), [][]byte{sandbox.EncodeHeaders(resp.Header), resp.Body}
	case name == "kv_get" && len(args) == 1:
		v, err := host.KVGet(string(args[0]))
		if err != nil {
			return int64(sandbox.ErrorCode(err)), nil
		}
		return 0, [][]byte{v}
	case name == "kv_put" && len(args) == 2:
		return int64(sandbox.ErrorCode(host.KVPut(string(args[0]), args[1]))), nil
	case name == "kv_delete" && len(args) == 1:
		return int64(sandbox.ErrorCode(host.KVDelete(string(args[0])))), nil
	case name == "seen" && len(args) == 2:
		ns, err := strconv.ParseInt(string(args[1]), 10, 64)
		if err != nil || ns <= 0 {
			return bad, nil
		}
		dup, err := host.Seen(string(args[0]), time.Duration(ns))
		switch {
		case err != nil:
			return int64(sandbox.ErrorCode(err)), nil
		case dup:
			return 1, nil
		}
		return 0, nil
	}
	return bad, nil
}
