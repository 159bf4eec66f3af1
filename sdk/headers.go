package sluice

import "strings"

// This file has no build constraint so that it can be tested on the host.

// parseHeaders parses lines "Name: value\n", one per value, in order.
func parseHeaders(s string) map[string][]string {
	h := make(map[string][]string)
	for len(s) > 0 {
		line := s
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			line, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		colon := strings.IndexByte(line, ':')
		if colon <= 0 {
			continue
		}
		name, value := line[:colon], line[colon+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		h[name] = append(h[name], value)
	}
	return h
}
