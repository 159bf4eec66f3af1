package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/sluice-run/sluice/client"
	"github.com/sluice-run/sluice/config"
	"github.com/sluice-run/sluice/internal/version"
	"github.com/sluice-run/sluice/triggers"
)

// StatusSubject is where the runtime answers status requests. Producers
// read outcomes here instead of from the status bucket, on which the
// publish role has no right: reading the bucket directly would mean
// reading every event's result, and watching it means creating consumers,
// whose delivery subject no permission can check.
const StatusSubject = client.StatusSubject

// APISubjectPrefix is the runtime's API for producers: a NATS micro
// service whose endpoints the publish role may call (every node serves
// it, and one answers each request).
const APISubjectPrefix = client.APISubjectPrefix

// Bounds of a status request.
const (
	maxEventIDLen     = 1024
	statusCallTimeout = 5 * time.Second
	// replyHeadroom is kept free under the broker's max_payload for the
	// reply's framing and headers.
	replyHeadroom = 8 << 10
)

// StatusRequest asks for an event's status at its bindings.
type StatusRequest = client.StatusRequest

// StatusReply is the answer to a StatusRequest.
type StatusReply = client.StatusReply

// startAPI serves StatusSubject from the status bucket.
func (r *Runtime) startAPI(ctx context.Context) error {
	store, err := triggers.NewStatusStore(ctx, r.js)
	if err != nil {
		return fmt.Errorf("status API: %w", err)
	}
	svc, err := micro.AddService(r.nc, micro.Config{
		Name: "sluice_api", Version: version.SemVer(),
		Description: "sluice runtime API for producers: event statuses",
	})
	if err != nil {
		return fmt.Errorf("status API: %w", err)
	}
	r.api = svc
	err = svc.AddGroup(APISubjectPrefix).AddEndpoint("status", micro.HandlerFunc(func(req micro.Request) {
		// The runtime answers with its own authority, and a requester
		// chooses the reply subject: answer only where a Sluice-Reply may
		// go (an inbox or a configured reply subject), never to a KV,
		// admin or other reserved subject, nor to one too long for the
		// connection.
		if err := config.CheckReplySubject(r.CurrentConfig().ReplySubjects, req.Reply()); err != nil {
			r.log.Warn("status request dropped: reply subject not allowed", "length", len(req.Reply()), "error", err)
			return
		}
		var in StatusRequest
		if err := json.Unmarshal(req.Data(), &in); err != nil {
			_ = req.Error("400", "bad request: "+err.Error(), nil)
			return
		}
		if in.ID == "" || len(in.ID) > maxEventIDLen || len(in.Stream) > config.MaxSubjectLen || len(in.Binding) > config.MaxSubjectLen {
			_ = req.Error("400", fmt.Sprintf("bad request: an event id of 1 to %d bytes is required", maxEventIDLen), nil)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), statusCallTimeout)
		defer cancel()
		out, err := r.statuses(ctx, store, in)
		if err != nil {
			_ = req.Error("500", err.Error(), nil)
			return
		}
		_ = req.RespondJSON(out)
	}))
	if err != nil {
		return fmt.Errorf("status API: %w", err)
	}
	return nil
}

// statuses answers one StatusRequest from store and the current config.
func (r *Runtime) statuses(ctx context.Context, store *triggers.StatusStore, in StatusRequest) (StatusReply, error) {
	out := StatusReply{ID: in.ID, Statuses: []triggers.Status{}}
	for _, b := range r.CurrentConfig().Bindings() {
		if in.Stream != "" && triggers.StreamName(b) != in.Stream || in.Binding != "" && b.Name != in.Binding {
			continue
		}
		s, ok, err := store.Get(ctx, in.ID, b.Name)
		if err != nil {
			return out, fmt.Errorf("status of %s at %s: %w", in.ID, b.Name, err)
		}
		if !ok {
			if in.Stream == "" {
				continue
			}
			s = triggers.Status{ID: in.ID, Binding: b.Name, Function: b.Function, State: triggers.StateQueued,
				MaxAttempts: b.Retry.MaxAttempts, Subject: b.Subject, Stream: in.Stream}
		}
		out.Statuses = append(out.Statuses, s)
	}
	return out, fitReply(&out, int(r.nc.MaxPayload())-replyHeadroom)
}

var errReplyTooLarge = errors.New("the statuses do not fit in one message even without their results")

// fitReply leaves results out of out, largest first, until it encodes in
// at most limit bytes.
func fitReply(out *StatusReply, limit int) error {
	size := func() int {
		b, _ := json.Marshal(out)
		return len(b)
	}
	if size() <= limit {
		return nil
	}
	order := make([]int, len(out.Statuses))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(a, b int) bool { return len(out.Statuses[order[a]].Result) > len(out.Statuses[order[b]].Result) })
	for _, i := range order {
		s := &out.Statuses[i]
		if len(s.Result) == 0 {
			break
		}
		s.Result = nil
		out.Omitted = append(out.Omitted, s.Binding)
		if size() <= limit {
			return nil
		}
	}
	return errReplyTooLarge
}
