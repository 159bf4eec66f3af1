package config

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// validate runs the checks that span blocks or need defaults: unique names,
// functions that exist, retry bounds, subjects that do not overlap.
func (d *decoder) validate(c *Config) {
	d.checkNames(c)
	d.checkFunctions(c)
	d.checkRetries(c)
	d.checkOverlaps(c)
}

// checkNames reports duplicate function, queue, topic and subscriber names;
// queues and topics share one namespace.
func (d *decoder) checkNames(c *Config) {
	functions := map[string]*entity{}
	for _, e := range d.src.functions {
		d.unique(functions, e, "function", "Function names must be unique.")
	}
	bindings := map[string]*entity{}
	for _, e := range d.src.queues {
		d.unique(bindings, e, "queue", "Queue and topic names must be unique: they name the JetStream streams.")
	}
	for _, e := range d.src.topics {
		d.unique(bindings, e, "topic", "Queue and topic names must be unique: they name the JetStream streams.")
		subs := map[string]*entity{}
		for _, s := range e.subs {
			d.unique(subs, s, "subscriber", fmt.Sprintf("Subscriber names must be unique within topic %q.", e.name()))
		}
	}
}

func (d *decoder) unique(seen map[string]*entity, e *entity, kind, rule string) {
	name := e.name()
	if name == "" {
		return
	}
	first, dup := seen[name]
	if !dup {
		seen[name] = e
		return
	}
	e.nameOK = false // its default dead-letter subject is taken too: say it once
	d.errorf(e.labelRange(), fmt.Sprintf("Duplicate %s name", kind),
		"A %s named %q was already declared at %s. %s", first.block.Type, name, first.labelRange(), rule)
}

// checkFunctions reports bindings that name a function the file does not
// declare.
func (d *decoder) checkFunctions(c *Config) {
	var names []string
	declared := map[string]bool{}
	for _, f := range c.Functions {
		if !declared[f.Name] {
			declared[f.Name] = true
			names = append(names, f.Name)
		}
	}
	check := func(e *entity, fn, binding string) {
		if e.bad["function"] || declared[fn] {
			return
		}
		var detail strings.Builder
		fmt.Fprintf(&detail, "%s names the function %q, which is not declared.", binding, fn)
		if s := suggest(fn, names); s != "" {
			fmt.Fprintf(&detail, " Did you mean %q?", s)
		}
		if len(names) == 0 {
			detail.WriteString(` No functions are declared; add a function "NAME" { module = "..." } block.`)
		} else {
			quoted := make([]string, len(names))
			for i, n := range names {
				quoted[i] = fmt.Sprintf("%q", n)
			}
			fmt.Fprintf(&detail, " Declared functions: %s.", strings.Join(quoted, ", "))
		}
		d.errorf(e.valueRange("function"), "Unknown function", "%s", detail.String())
	}
	for i, q := range c.Queues {
		check(d.src.queues[i], q.Function, fmt.Sprintf("Queue %q", q.Name))
	}
	for i, t := range c.Topics {
		for j, s := range t.Subscribers {
			check(d.src.topics[i].subs[j], s.Function, fmt.Sprintf("Subscriber %q of topic %q", s.Name, t.Name))
		}
	}
}

// checkRetries reports a retry policy whose initial backoff exceeds its
// maximum (either may be a default).
func (d *decoder) checkRetries(c *Config) {
	check := func(e *entity, r Retry) {
		if e.bad["retry.initial"] || e.bad["retry.max"] || r.Initial <= r.Max {
			return
		}
		rng := e.labelRange()
		maxFrom := ""
		if a, ok := e.retry["max"]; ok {
			rng = a.Expr.Range()
		} else {
			maxFrom = " by default"
			if a, ok := e.retry["initial"]; ok {
				rng = a.Expr.Range()
			}
		}
		d.errorf(rng, "Invalid retry policy",
			"The initial backoff (%s) is greater than the maximum backoff (%s%s); max must be at least initial.", r.Initial, r.Max, maxFrom)
	}
	for i, q := range c.Queues {
		check(d.src.queues[i], q.Retry)
	}
	for i, t := range c.Topics {
		for j, s := range t.Subscribers {
			check(d.src.topics[i].subs[j], s.Retry)
		}
	}
}

// subjectUse is a subject a queue, topic or dead-letter stream captures.
type subjectUse struct {
	subject string
	what    string // for messages: `queue "emails"`
	rng     hcl.Range
}

// checkOverlaps reports queue and topic subjects that overlap each other
// (JetStream streams may not share subjects), and dead-letter subjects that
// overlap a queue's or topic's subject or another dead-letter subject.
func (d *decoder) checkOverlaps(c *Config) {
	var streams, dlqs []subjectUse
	for i, q := range c.Queues {
		e := d.src.queues[i]
		if q.Subject != "" && !e.bad["subject"] {
			streams = append(streams, subjectUse{q.Subject, fmt.Sprintf("queue %q", q.Name), e.valueRange("subject")})
		}
		if u, ok := deadLetterUse(e, q.DeadLetter, fmt.Sprintf("queue %q", q.Name)); ok {
			dlqs = append(dlqs, u)
		}
	}
	for i, t := range c.Topics {
		e := d.src.topics[i]
		if t.Subject != "" && !e.bad["subject"] {
			streams = append(streams, subjectUse{t.Subject, fmt.Sprintf("topic %q", t.Name), e.valueRange("subject")})
		}
		if !e.nameOK {
			continue
		}
		for j, s := range t.Subscribers {
			if u, ok := deadLetterUse(e.subs[j], s.DeadLetter, fmt.Sprintf("subscriber %q of topic %q", s.Name, t.Name)); ok {
				dlqs = append(dlqs, u)
			}
		}
	}
	var streamIdx subjectIndex
	for j, b := range streams {
		if i, ok := streamIdx.overlap(b.subject); ok {
			a := streams[i]
			d.errorf(b.rng, "Overlapping subjects",
				"The subject %q of %s overlaps the subject %q of %s (at %s): some subjects match both. Each event subject must belong to one queue or topic, because JetStream streams cannot share subjects.",
				b.subject, b.what, a.subject, a.what, a.rng)
		}
		streamIdx.add(b.subject, j)
	}
	// A dead-letter stream captures the subjects one token below the
	// dead_letter subject (client.DeadLetterSubjects); the subject itself
	// is checked too, so that nothing else claims a binding's name for it.
	var dlqIdx, captureIdx subjectIndex
	for j, b := range dlqs {
		captureIdx.add(b.subject, j)
		captureIdx.add(b.subject+".*", j)
	}
	for j, b := range dlqs {
		i, ok := streamIdx.overlap(b.subject)
		if !ok {
			i, ok = streamIdx.overlap(b.subject + ".*")
		}
		if ok {
			a := streams[i]
			d.errorf(b.rng, "Dead-letter subject overlaps an event subject",
				"The dead-letter subject %q of %s overlaps the subject %q of %s (at %s). Dead letters are kept in a stream of their own, and JetStream streams cannot share subjects; choose a dead_letter subject no queue or topic consumes.",
				b.subject, b.what, a.subject, a.what, a.rng)
		} else if i, ok := dlqIdx.overlap(b.subject); ok {
			a := dlqs[i]
			d.errorf(b.rng, "Duplicate dead-letter subject",
				"The dead-letter subject %q of %s overlaps the dead-letter subject %q of %s (at %s). Each binding needs a dead-letter subject of its own.",
				b.subject, b.what, a.subject, a.what, a.rng)
		}
		dlqIdx.add(b.subject, j)
	}
	// A guest publishing there would forge dead letters.
	for i, f := range c.Functions {
		for _, p := range f.Publish {
			if j, ok := captureIdx.overlap(p); ok {
				a := dlqs[j]
				d.errorf(d.src.functions[i].valueRange("publish"), "Publish subject overlaps a dead-letter subject",
					"Function %q may publish to %q, which overlaps the dead-letter subject %q of %s (at %s): it could forge dead letters. Dead letters are written by the runtime only.",
					f.Name, p, a.subject, a.what, a.rng)
			}
		}
	}
	// A reply there would let a producer make the runtime inject events
	// or forge dead letters.
	for i, r := range c.ReplySubjects {
		if j, ok := streamIdx.overlap(r); ok {
			a := streams[j]
			d.errorf(d.replyRanges[i], "Reply subject overlaps an event subject",
				"The reply subject %q overlaps the subject %q of %s (at %s): a producer could make the runtime publish events there. Choose reply subjects no queue or topic consumes.",
				r, a.subject, a.what, a.rng)
		} else if j, ok := captureIdx.overlap(r); ok {
			a := dlqs[j]
			d.errorf(d.replyRanges[i], "Reply subject overlaps a dead-letter subject",
				"The reply subject %q overlaps the dead-letter subject %q of %s (at %s): a producer could make the runtime forge dead letters. Choose reply subjects of their own.",
				r, a.subject, a.what, a.rng)
		}
	}
}

// deadLetterUse describes a binding's dead-letter subject for the overlap
// checks; ok is false when it was rejected already or derives from a bad
// name.
func deadLetterUse(e *entity, subject, what string) (subjectUse, bool) {
	if subject == "" || e.bad["dead_letter"] {
		return subjectUse{}, false
	}
	if a, ok := e.attrs["dead_letter"]; ok {
		return subjectUse{subject, what, a.Expr.Range()}, true
	}
	if !e.nameOK {
		return subjectUse{}, false
	}
	return subjectUse{subject, what + " (the default dead_letter)", e.labelRange()}, true
}

// suggest returns the name in names closest to s, if it is close enough to
// be a likely typo: the same but for case, or at most two edits away and
// no more than half of s changed.
func suggest(s string, names []string) string {
	best, bestDist := "", 3
	for _, n := range names {
		if strings.EqualFold(s, n) {
			return n
		}
		if d := editDistance(s, n); d < bestDist && 2*d <= len(s) {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
